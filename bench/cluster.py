"""Perdure on PostgreSQL, 1 node against N nodes sharing one database (`--node-name`), beside
one node on SQLite.

    .venv/bin/python -m bench.cluster --configs sqlite,1,3 --n 3000 -c 32 --rounds 2

A configuration is `sqlite` (one `perdure server`, its embedded store) or a node count on
PostgreSQL: a fresh database of a private PostgreSQL 15 cluster, the nodes started together
(they split the 64 partitions at once). Rounds alternate the configurations (A B C A B C), each
with fresh servers and a fresh official-SDK Greeter (bench/greeter.py) registered on the first
node, and one load generator (bench/load.py) per node's ingress with its share of the
invocations and connections (a plain call stays on the node it reaches). Reported per round
and as a mean per configuration: total throughput, p50/p99 (mean over generators), CPU ms per
invocation of every node, of the SDK and of PostgreSQL (postmaster and backends), commits and
WAL bytes per invocation, and the ratios to SQLite. On 2 cores throughput cannot grow with
nodes (they share the cores with the SDK, the load generators and PostgreSQL); what to read
there is the cost per invocation (docs/performance.md: the per-node CPU budget)."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.pgstat import DbProbe
from bench.procstat import tree_cpu_s
from tests.cluster.support import Cluster
from tests.support import PythonService, register
from tests.support.servers import PerdureServer

REPO_ROOT = Path(__file__).resolve().parent.parent
METRICS = (
    ("inv/s", "throughput_per_s", 7, 0),
    ("p50 ms", "p50_ms", 7, 1),
    ("p99 ms", "p99_ms", 7, 1),
    ("nodes cpu ms/inv", "nodes_cpu_ms_per_inv", 16, 3),
    ("sdk cpu ms/inv", "sdk_cpu_ms_per_inv", 14, 3),
    ("pg cpu ms/inv", "db_cpu_ms_per_inv", 13, 3),
    ("commits/inv", "db_commits_per_inv", 11, 3),
    ("WAL B/inv", "db_wal_bytes_per_inv", 9, 0),
)


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("a load generator exited early")
    return line.strip()


def _load(port: int, n: int, concurrency: int, warmup: int) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "bench.load", "--port", str(port), "--n", str(n)]
    argv += ["--concurrency", str(concurrency), "--warmup", str(warmup)]
    argv += ["--path", "/Greeter/greet", "--body", '"Sarah"']
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)


def run(config: str, round_index: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    base = workdir / f"{config}-{round_index}"
    cluster = None if config == "sqlite" else Cluster(base, int(config))
    nodes = [PerdureServer(base / "n0")] if cluster is None else cluster.nodes
    sdk = PythonService(
        "bench.greeter",
        "app",
        log_dir=workdir,
        name=f"greeter-{config}-{round_index}",
        hypercorn_args=args.sdk_args.split(),
    )
    count = len(nodes)
    try:
        if cluster is None:
            nodes[0].start()
        else:
            cluster.start()
        with sdk:
            if cluster is not None:
                cluster.wait_balanced([f"n{i}" for i in range(count)])
            register(nodes[0].admin_url, sdk.url)
            if count > 1:
                time.sleep(2.5)  # every node reloads the registry within a renewal interval
            db = None if cluster is None else DbProbe(cluster.pg, cluster.dsn)
            loads = [
                _load(
                    n.ingress_port, args.n // count, max(1, args.concurrency // count), args.warmup // count
                )
                for n in nodes
            ]
            for load in loads:
                if _line(load) != "ready":
                    raise RuntimeError("load generator did not report ready")
            db0 = None if db is None else db.read()
            load0 = os.getloadavg()[0]
            cpu0 = [tree_cpu_s(n.pid) for n in nodes]
            sdk0 = tree_cpu_s(sdk.pid)
            for load in loads:
                assert load.stdin is not None
                load.stdin.write("go\n")
                load.stdin.flush()
            results = [json.loads(_line(load)) for load in loads]
            cpu = [tree_cpu_s(n.pid) - c for n, c in zip(nodes, cpu0, strict=True)]
            sdk_cpu = tree_cpu_s(sdk.pid) - sdk0
            load1 = os.getloadavg()[0]
            for load in loads:
                load.wait(timeout=600)
            db1 = None if db is None else db.read()
    finally:
        if cluster is None:
            nodes[0].stop()
        else:
            cluster.stop()
    done = max(1, sum(int(r["ok"]) for r in results))
    row: dict[str, Any] = {
        "config": config,
        "round": round_index,
        "ok": done,
        "errors": sum(int(r["errors"]) for r in results),
        "load_average": [round(load0, 1), round(load1, 1)],
        "throughput_per_s": sum(float(r["throughput_per_s"]) for r in results),
        "p50_ms": statistics.fmean(float(r["p50_ms"]) for r in results),
        "p99_ms": statistics.fmean(float(r["p99_ms"]) for r in results),
        "node_cpu_ms_per_inv": [round(c * 1000 / done, 3) for c in cpu],
        "nodes_cpu_ms_per_inv": sum(cpu) * 1000 / done,
        "sdk_cpu_ms_per_inv": sdk_cpu * 1000 / done,
        "db_cpu_ms_per_inv": 0.0,
        "db_commits_per_inv": 0.0,
        "db_wal_bytes_per_inv": 0.0,
    }
    if db0 is not None and db1 is not None:
        row["db_cpu_ms_per_inv"] = (db1.cpu_s - db0.cpu_s) * 1000 / done
        row["db_commits_per_inv"] = (db1.commits - db0.commits) / done
        row["db_wal_bytes_per_inv"] = (db1.wal_bytes - db0.wal_bytes) / done
    return row


def _label(config: str) -> str:
    return "SQLite, 1 node" if config == "sqlite" else f"PostgreSQL, {config} node{'s' * (config != '1')}"


def _print_table(rows: list[dict[str, Any]], configs: list[str]) -> dict[str, dict[str, float]]:
    head = " ".join(title.rjust(width) for title, _, width, _ in METRICS)
    print(f"{'configuration':22} {'round':>5} {head} {'per node cpu ms/inv':>20}")
    means: dict[str, dict[str, float]] = {}
    for config in configs:
        mine = [r for r in rows if r["config"] == config]
        means[config] = {key: statistics.fmean(float(r[key]) for r in mine) for _, key, _, _ in METRICS}
        for r in [*mine, {**means[config], "round": "mean", "node_cpu_ms_per_inv": ""}]:
            cells = " ".join(f"{float(r[key]):{width}.{digits}f}" for _, key, width, digits in METRICS)
            per_node = " ".join(str(c) for c in r["node_cpu_ms_per_inv"]) if r["node_cpu_ms_per_inv"] else ""
            print(f"{_label(config):22} {r['round']!s:>5} {cells} {per_node:>20}")
    if "sqlite" in means:
        base = means["sqlite"]
        for config in configs:
            if config != "sqlite" and base["throughput_per_s"]:
                m = means[config]
                ratio = {k: m[k] / base[k] for k in ("throughput_per_s", "p50_ms", "nodes_cpu_ms_per_inv")}
                print(
                    f"{_label(config)} / SQLite: throughput {ratio['throughput_per_s']:.2f}, "
                    f"p50 {ratio['p50_ms']:.2f}, nodes cpu/inv {ratio['nodes_cpu_ms_per_inv']:.2f}"
                )
    return means


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--configs", default="sqlite,1,3", help="comma list: sqlite and/or PostgreSQL node counts"
    )
    parser.add_argument(
        "--nodes", default="", help="PostgreSQL node counts only (the old flag): --configs N,M"
    )
    parser.add_argument("--n", type=int, default=3000, help="measured invocations per run (split over nodes)")
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="connections (split over nodes)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up invocations (split over nodes)")
    parser.add_argument("--rounds", type=int, default=1, help="rounds; they alternate the configurations")
    parser.add_argument(
        "--sdk-args", default="", help="hypercorn arguments of the SDK ('--worker-class uvloop --workers 4')"
    )
    args = parser.parse_args(argv)
    configs = [c.strip() for c in (args.nodes or args.configs).split(",") if c.strip()]
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-bench-cluster-") as tmp:
        for round_index in range(args.rounds):
            for config in configs:
                row = run(config, round_index, args, Path(tmp))
                print(json.dumps(row), flush=True)
                rows.append(row)
    _print_table(rows, configs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
