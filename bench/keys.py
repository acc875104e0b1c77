"""Many virtual-object keys with state: is the per-call cost flat from a working set of 1,000 keys
to one of 100,000?

    python -m bench.keys --keys 100000 --n 5000 --rounds 2     # --servers perdure,restate

Per server: `Counter/<key>/add` (official Python SDK, `bench/objects_service.py`; each call reads
and writes the key's state) is first called once on every one of the `--keys` keys, so each holds
state. For Perdure the first `--seed` keys are written by real calls and the rest copied from
them with the server stopped (as `bench.scale` grows its store); the real Restate server gets
every key by a real call (slow: use `--servers perdure` for the quick figure). Then rounds
alternate: N calls on keys drawn at random from the first 1,000 (a working set Perdure keeps
cached) and N calls on keys drawn from all of them (nearly every call on a key not touched for a
long while), each with throughput, p99 and server CPU per call, and the ratio all/hot.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import build_request, percentile_ms, read_response
from bench.procstat import tree_cpu_s
from tests.support import PythonService, make_server, register
from tests.support.paths import restate_installed
from tests.support.servers import Server

HOT_KEYS = 1_000
HOST = "127.0.0.1"


async def _calls(port: int, paths: list[str], concurrency: int) -> tuple[list[float], int, float]:
    """POST `1` to every path over `concurrency` keep-alive connections: latencies, errors, wall s."""
    todo = iter(paths)
    latencies: list[float] = []
    errors = 0

    async def connection() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            for path in todo:
                t = time.perf_counter()
                writer.write(build_request(HOST, port, path, b"1"))
                status, _ = await read_response(reader)
                if status == 200:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(connection())
    return latencies, errors, time.perf_counter() - t0


def calls(server: Server, keys: list[int], concurrency: int) -> dict[str, float]:
    paths = [f"/Counter/k{k}/add" for k in keys]
    cpu0 = tree_cpu_s(server.pid)
    latencies, errors, elapsed = asyncio.run(_calls(server.ingress_port, paths, concurrency))
    cpu = tree_cpu_s(server.pid) - cpu0
    lat = sorted(latencies)
    return {
        "per_s": len(lat) / elapsed,
        "p99_ms": percentile_ms(lat, 0.99),
        "cpu_ms_per_call": cpu * 1000.0 / max(1, len(lat)),
        "errors": float(errors),
    }


def copy_state(db: Path, seeded: int, keys: int) -> None:
    """With the server stopped: keys `seeded`..`keys`-1 get the state rows of the seeded ones."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        rows = conn.execute("SELECT key, skey, value FROM state WHERE service = 'Counter'").fetchall()
        by_key: dict[str, list[tuple[bytes, bytes]]] = {}
        for key, skey, value in rows:
            by_key.setdefault(key, []).append((skey, value))
        sources = [by_key[f"k{i}"] for i in range(seeded)]
        new = sorted(f"k{i}" for i in range(seeded, keys))
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO state (service, key, skey, value) VALUES ('Counter', ?, ?, ?)",
            ((key, skey, value) for key in new for skey, value in sources[int(key[1:]) % seeded]),
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


def run_one(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = make_server(kind, workdir / f"{kind}-data")
    svc = PythonService("bench.objects_service", "app", log_dir=workdir, name=f"keys-{kind}")
    rng = random.Random(7)
    rounds: dict[str, list[dict[str, float]]] = {"hot": [], "all": []}
    with svc:
        server.start()
        register(server.admin_url, svc.url)
        t0 = time.monotonic()
        seeded = args.seed if server.kind == "perdure" else args.keys
        calls(server, list(range(seeded)), args.concurrency)
        if seeded < args.keys:
            server.stop()
            copy_state(server.data_dir / "perdure.sqlite3", seeded, args.keys)
            server.start()
        seed_s = time.monotonic() - t0
        calls(server, [rng.randrange(HOT_KEYS) for _ in range(args.warmup)], args.concurrency)
        for _ in range(args.rounds):
            for phase, span in (("hot", min(HOT_KEYS, args.keys)), ("all", args.keys)):
                keys = [rng.randrange(span) for _ in range(args.n)]
                rounds[phase].append(calls(server, keys, args.concurrency))
        server.kill()
    means = {p: {k: statistics.fmean(r[k] for r in rs) for k in rs[0]} for p, rs in rounds.items()}
    return {"server": kind, "seed_s": seed_s, "rounds": rounds, **means}


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=HOT_KEYS, help="Perdure: keys written by real calls")
    parser.add_argument("--n", type=int, default=5000, help="calls per round and phase")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--servers", default="perdure")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k and (k != "restate" or restate_installed())]
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-keys-") as tmp:
        for kind in kinds:
            print(f"{kind}: {args.keys} keys with state …", file=sys.stderr, flush=True)
            rows.append(run_one(kind, args, Path(tmp)))
    cols = ("per_s", "p99_ms", "cpu_ms_per_call", "errors")
    print(f"{'server':8} {'keys':>7} " + " ".join(f"{c:>16}" for c in cols))
    for r in rows:
        for phase, span in (("hot", HOT_KEYS), ("all", args.keys)):
            print(f"{r['server']:8} {span:7d} " + " ".join(f"{r[phase][c]:16.2f}" for c in cols))
        ratio = {c: r["all"][c] / r["hot"][c] for c in cols[:3] if r["hot"][c]}
        print(f"{r['server']:8} {'all/hot':>7} " + " ".join(f"{ratio[c]:15.2f}x" for c in cols[:3]))
    print(json.dumps({"keys": args.keys, "n": args.n, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
