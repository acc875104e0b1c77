"""Cost per invocation with a large store: the Greeter benchmark against data directories that
already hold 1,000, 100,000 and 1,000,000 completed invocations (each with its journal).

    python -m bench.scale --stored 1000,100000,1000000 --n 3000

For each size: a Perdure server runs a few hundred real idempotent Greeter calls (so the
completed rows, journals and indexes are the server's own), is stopped, and the store is grown to
the size by copying those rows under fresh random invocation ids (retention pushed past the run).
Then a fresh server on that directory serves the measured load (`bench.load`, its own process):
throughput, p99, server CPU per invocation and peak RSS, each also as a ratio to the smallest store.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.run import drive_load
from tests.support import PythonService, make_server, register

SEED_CALLS = 300
COPY_CHUNK = 20_000
MIB = 1024 * 1024


def seed(data_dir: Path, workdir: Path) -> None:
    """Real completed invocations, written by the server itself."""
    server = make_server("perdure", data_dir)
    svc = PythonService("bench.greeter", "app", log_dir=workdir, name="greeter-seed")
    with server, svc, httpx.Client(base_url=server.ingress_url, timeout=60) as client:
        register(server.admin_url, svc.url)
        for i in range(SEED_CALLS):
            resp = client.post("/Greeter/greet", json=f"n{i}", headers={"idempotency-key": f"seed-{i}"})
            resp.raise_for_status()


def grow(db: Path, stored: int) -> None:
    """Copy the completed rows under fresh ids until `stored` completed invocations exist."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        far = int(time.time() * 1000) + 365 * 86_400_000
        rows = conn.execute(
            "SELECT id, status, service, key, created_at, record FROM invocation WHERE status = 'completed'"
        ).fetchall()
        if not rows:
            raise RuntimeError("the seed left no completed invocations to copy")
        journals = {
            r[0]: conn.execute(
                "SELECT idx, type, body, appended_at FROM journal WHERE id = ?", (r[0],)
            ).fetchall()
            for r in rows
        }
        have = len(rows)
        while have < stored:
            n = min(COPY_CHUNK, stored - have)
            inv, jrn = [], []
            for i in range(n):
                src = rows[(have + i) % len(rows)]
                new_id = os.urandom(24)
                inv.append((new_id, src[1], src[2], src[3], src[4], far, src[5]))
                jrn.extend((new_id, *e) for e in journals[src[0]])
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO invocation (id, status, service, key, created_at, expires_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                inv,
            )
            conn.executemany(
                "INSERT INTO journal (id, idx, type, body, appended_at) VALUES (?, ?, ?, ?, ?)", jrn
            )
            conn.execute("COMMIT")
            have += n
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def measure(data_dir: Path, workdir: Path, args: argparse.Namespace, label: str) -> dict[str, float]:
    server = make_server("perdure", data_dir)
    svc = PythonService(
        "bench.greeter",
        "app",
        log_dir=workdir,
        name=f"greeter-{label}",
        hypercorn_args=["--worker-class", "uvloop"],
    )
    with server, svc:
        register(server.admin_url, svc.url)  # the same endpoint again: a new deployment is fine
        r = drive_load(server.ingress_port, args, server.pid, svc.pid)
        return {
            "throughput_per_s": r.throughput_per_s,
            "p99_ms": r.p99_ms,
            "server_cpu_ms_per_inv": r.server_cpu_ms_per_inv,
            "server_peak_rss_mib": r.server_peak_rss_mib,
            "errors": float(r.errors),
            "db_mib": (data_dir / "perdure.sqlite3").stat().st_size / MIB,
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", default="1000,100000,1000000")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.stored.split(",")]
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="perdure-scale-") as tmp_dir:
        work = args.workdir or Path(tmp_dir)
        for size in sizes:
            data = work / f"data-{size}"
            print(f"{size} stored: seeding and growing …", file=sys.stderr, flush=True)
            seed(data, work)
            grow(data / "perdure.sqlite3", size)
            print(f"{size} stored: measuring …", file=sys.stderr, flush=True)
            results[size] = measure(data, work, args, str(size))
    base = results[sizes[0]]
    keys = ("throughput_per_s", "p99_ms", "server_cpu_ms_per_inv", "server_peak_rss_mib", "db_mib")
    print(f"{'stored':>10} " + " ".join(f"{k:>22}" for k in keys) + "  (ratio to the smallest)")
    for size, r in results.items():
        cells = " ".join(f"{r[k]:12.2f} ({r[k] / base[k] if base[k] else 0:5.2f}x)" for k in keys)
        print(f"{size:>10} {cells}")
    print(json.dumps({"n": args.n, "results": {str(k): v for k, v in results.items()}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
