"""The timeline of a node's death on PostgreSQL: kill -9 one of 3 nodes under load, then when its
leases expired, when the survivors acquired them, adopted them and first committed to them.

    .venv/bin/python -m bench.pgtakeover --runs 3 -c 16

Each run: a fresh database, 3 nodes started together (they split the 64 partitions), the
official-SDK Greeter registered on the first, one `bench/load.py` per node (plain calls, which
stay on the node they reach: a survivor starts new invocations in the partitions it owns, so the
taken-over partitions see traffic as soon as they are adopted). After `--settle` seconds of load
the last node is SIGKILLed. A poller reads `partition_lease` every 20 ms (its own connection);
the survivors' logs give when each `took` and `adopted` partitions. Every time is seconds after
the kill, on the wall clock (the database runs on this machine, so its clock is the same):
- expiry: the dead node's leases' `expires_at` (fixed from its last renewal on);
- acquired: the first poll seeing the partition at a new epoch (per partition: first and last);
- adopted: the survivors' `adopted partitions` log lines (first and last);
- first commit: the first poll seeing a new owner's `last_batch` set (any partition; and the
  last partition to see one, which needs traffic in that partition)."""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from tests.cluster.support import Cluster
from tests.support import PythonService, register
from tests.support.paths import REPO_ROOT

POLL_S = 0.02
LEASES_SQL = "SELECT partition, owner, epoch, last_batch, extract(epoch FROM expires_at) FROM partition_lease"
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \S+ \S+ (.*)$")


def _log_times(path: Path, after: float, needle: str) -> list[float]:
    """Wall-clock times of the log lines containing `needle`, later than `after`."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LOG_LINE.match(line)
        if m and needle in m.group(2):
            at = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if at >= after:
                out.append(at)
    return out


def _start_load(port: int, args: argparse.Namespace) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.load", "--port", str(port), "--n", "10000000"]
    argv += ["--concurrency", str(args.concurrency), "--warmup", "50", "--path", "/Greeter/greet"]
    argv += ["--body", '"Sarah"']
    return subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=REPO_ROOT,
    )


def run_once(index: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cluster = Cluster(workdir / f"run-{index}", 3)
    sdk = PythonService("bench.greeter", "app", log_dir=workdir, name=f"greeter-{index}")
    loads: list[subprocess.Popen[str]] = []
    seen: dict[int, tuple[str | None, int, int, float | None]] = {}
    polls: list[tuple[float, dict[int, tuple[str | None, int, int, float | None]]]] = []
    stop = threading.Event()

    def poll(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        while not stop.is_set():
            rows = conn.execute(LEASES_SQL).fetchall()
            polls.append((time.time(), {int(r[0]): (r[1], int(r[2]), int(r[3]), r[4]) for r in rows}))
            time.sleep(POLL_S)

    try:
        cluster.start()
        with sdk:
            cluster.wait_balanced(["n0", "n1", "n2"])
            register(cluster.nodes[0].admin_url, sdk.url)
            time.sleep(2.5)  # every node reloads the registry within a renewal interval
            loads = [_start_load(node.ingress_port, args) for node in cluster.nodes]
            for load in loads:
                assert load.stdout is not None and load.stdin is not None
                if load.stdout.readline().strip() != "ready":
                    raise RuntimeError("a load generator did not report ready")
                load.stdin.write("go\n")
                load.stdin.flush()
            with psycopg.connect(cluster.dsn, autocommit=True) as conn:
                poller = threading.Thread(target=poll, args=(conn,))
                poller.start()
                try:
                    time.sleep(args.settle)
                    before = polls[-1][1]
                    theirs = {p: epoch for p, (owner, epoch, _, _) in before.items() if owner == "n2"}
                    cluster.nodes[2].kill()
                    killed = time.time()
                    loads[2].kill()
                    deadline = killed + args.timeout
                    while time.time() < deadline:
                        time.sleep(0.2)
                        last = polls[-1][1]
                        if all(last[p][1] > e and last[p][2] > 0 for p, e in theirs.items()):
                            break
                finally:
                    stop.set()
                    poller.join()
            seen = polls[-1][1]
    finally:
        for load in loads:
            load.kill()
        cluster.stop()
    expiry = [t for p in theirs for t in [_last_expiry(polls, killed, p)] if t is not None]
    acquired = [_first(polls, lambda r, p=p: r[p][1] > theirs[p]) for p in theirs]
    committed = [_first(polls, lambda r, p=p: r[p][1] > theirs[p] and r[p][2] > 0) for p in theirs]
    adopted = [
        t for node in cluster.nodes[:2] for t in _log_times(node.log_path, killed, "adopted partitions")
    ]
    took = [t for node in cluster.nodes[:2] for t in _log_times(node.log_path, killed, "took partitions")]

    def rel(values: list[float | None]) -> list[float] | None:
        known = [v - killed for v in values if v is not None]
        return [round(min(known), 2), round(max(known), 2)] if known else None

    return {
        "run": index,
        "partitions": len(theirs),
        "taken_over": sum(1 for p, e in theirs.items() if seen[p][1] > e),
        "expiry_s": rel(list(expiry)),
        "acquired_s": rel(list(acquired)),
        "took_log_s": rel(list(took)),
        "adopted_log_s": rel(list(adopted)),
        "first_commit_s": rel(list(committed)),
    }


def _last_expiry(polls: list[tuple[float, dict[int, Any]]], killed: float, p: int) -> float | None:
    """The dead node's lease expiry of partition `p`: its expires_at in the first poll after the kill."""
    for at, rows in polls:
        if at >= killed:
            value = rows[p][3]
            return None if value is None else float(value)
    return None


def _first(polls: list[tuple[float, dict[int, Any]]], check: Any) -> float | None:
    for at, rows in polls:
        if check(rows):
            return at
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", "-c", type=int, default=16, help="connections per node")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of load before the kill")
    parser.add_argument("--timeout", type=float, default=40.0, help="give up this long after the kill")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-bench-takeover-") as tmp:
        for i in range(args.runs):
            row = run_once(i, args, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    firsts = [r["first_commit_s"][0] for r in rows if r["first_commit_s"]]
    lasts = [r["first_commit_s"][1] for r in rows if r["first_commit_s"]]
    if firsts:
        print(
            f"first commit of a new owner after the kill: mean {statistics.fmean(firsts):.2f} s, "
            f"max {max(firsts):.2f} s; every partition committed by: max {max(lasts):.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
