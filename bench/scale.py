"""Cost per invocation with a large store: the Greeter benchmark against data directories that
already hold 1,000, 100,000 and 1,000,000 completed invocations (each with its journal).

    python -m bench.scale --stored 1000,100000,1000000 --n 3000

For each size: a Perdure server runs a few hundred real idempotent Greeter calls (so the
completed rows, journals and indexes are the server's own), is stopped, and the store is grown to
the size by copying those rows under fresh random invocation ids (retention pushed past the run).
Then the sizes are measured in alternating rounds (A B C A B C), each on a fresh copy of its
directory with a fresh server, under the measured load (`bench.load`, its own process):
throughput, p99, server CPU per invocation and peak RSS, the mean over rounds, each also as a
ratio to the smallest store.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.procstat import tree_write_bytes
from bench.run import drive_load
from tests.support import PythonService, make_server, register
from tests.support.servers import PerdureServer

SEED_CALLS = 300
COPY_CHUNK = 100_000  # rows per bulk-load transaction
CACHE_KIB = 512 * 1024
MIB = 1024 * 1024


def seed(data_dir: Path, workdir: Path, store: str = "") -> None:
    """Real completed invocations, written by the server itself (in `data_dir`, or in the
    PostgreSQL database `store`)."""
    server = PerdureServer(data_dir, store=store)
    svc = PythonService("bench.greeter", "app", log_dir=workdir, name="greeter-seed")
    with server, svc, httpx.Client(base_url=server.ingress_url, timeout=60) as client:
        register(server.admin_url, svc.url)
        for i in range(SEED_CALLS):
            resp = client.post("/Greeter/greet", json=f"n{i}", headers={"idempotency-key": f"seed-{i}"})
            resp.raise_for_status()


def grow(db: Path, stored: int) -> None:
    """Copy the completed rows under fresh ids until `stored` completed invocations exist.

    The server is stopped, so this is a bulk load, not a workload: no rollback journal, no fsync,
    a big page cache, and the new ids generated up front and inserted in key order in large
    transactions (every B-tree, the indexes too, then grows at its right edge instead of
    splitting pages all over a file bigger than the cache). The rows, the schema and the indexes
    are the server's own; only the ids are new. The server puts its own settings (WAL,
    synchronous=FULL) back when it opens the file.
    """
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        far = int(time.time() * 1000) + 365 * 86_400_000
        rows = conn.execute(
            "SELECT seq, status, service, key, created_at, record FROM invocation WHERE status = 'completed'"
        ).fetchall()
        if not rows:
            raise RuntimeError("the seed left no completed invocations to copy")
        journals = {
            r[0]: conn.execute(
                "SELECT idx, type, body, appended_at FROM journal WHERE inv = ?", (r[0],)
            ).fetchall()
            for r in rows
        }
        conn.execute("PRAGMA journal_mode=DELETE")  # leave WAL: a bulk load needs no log at all
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        new_ids = sorted(os.urandom(24) for _ in range(max(0, stored - len(rows))))
        first = conn.execute("SELECT max(seq) FROM invocation").fetchone()[0] + 1
        for start in range(0, len(new_ids), COPY_CHUNK):
            inv: list[tuple[object, ...]] = []
            jrn: list[tuple[object, ...]] = []
            for i, new_id in enumerate(new_ids[start : start + COPY_CHUNK], start):
                src = rows[i % len(rows)]
                inv.append((first + i, new_id, src[1], src[2], src[3], src[4], far, src[5]))
                jrn.extend((first + i, *e) for e in journals[src[0]])
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO invocation (seq, id, status, service, key, created_at, expires_at, record) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                inv,
            )
            conn.executemany(
                "INSERT INTO journal (inv, idx, type, body, appended_at) VALUES (?, ?, ?, ?, ?)", jrn
            )
            conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def settle(data_dir: Path) -> None:
    """Put the fresh copy on disk before the server starts: otherwise the server's first fsync of
    the database flushes the whole copy, and `written` counts a gigabyte the bench wrote."""
    for path in data_dir.iterdir():
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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
        written0 = tree_write_bytes(server.pid)
        r = drive_load(server.ingress_port, args, server.pid, svc.pid)
        written = tree_write_bytes(server.pid) - written0
        return {
            "throughput_per_s": r.throughput_per_s,
            "p99_ms": r.p99_ms,
            "server_cpu_ms_per_inv": r.server_cpu_ms_per_inv,
            "server_peak_rss_mib": r.server_peak_rss_mib,
            "errors": float(r.errors),
            "written_kib_per_inv": written / 1024 / (args.n + args.warmup),
            "db_mib": (data_dir / "perdure.sqlite3").stat().st_size / MIB,
        }


def report(
    n: int, keys: tuple[str, ...], rounds: dict[int, list[dict[str, float]]], grown: dict[int, float]
) -> None:
    """Every round on stderr; the mean of each size and its ratio to the smallest on stdout, then
    the whole result as one JSON line."""
    sizes = list(rounds)
    results = {
        size: {**{k: statistics.fmean(r[k] for r in rs) for k in keys}, "grow_s": grown[size]}
        for size, rs in rounds.items()
    }
    for size, rs in rounds.items():
        for i, r in enumerate(rs):
            print(f"round {i} {size:>9}: " + ", ".join(f"{k} {r[k]:.2f}" for k in keys), file=sys.stderr)
    base = results[sizes[0]]
    print(f"{'stored':>10} " + " ".join(f"{k:>22}" for k in keys) + "  (mean; ratio to smallest)")
    for size, r in results.items():
        cells = " ".join(f"{r[k]:12.2f} ({r[k] / base[k] if base[k] else 0:5.2f}x)" for k in keys)
        print(f"{size:>10} {cells}")
    out = {
        "n": n,
        "load_avg": os.getloadavg(),
        "results": {str(k): v for k, v in results.items()},
        "rounds": rounds,
    }
    print(json.dumps(out))


def scale_arguments(doc: str | None) -> argparse.ArgumentParser:
    """The arguments every store-size bench takes (this one and `bench.pgscale`)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stored", default="1000,100000,1000000")
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2, help="rounds per size, sizes alternating")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = scale_arguments(__doc__)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.stored.split(",")]
    rounds: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    grown: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="perdure-scale-") as tmp_dir:
        work = args.workdir or Path(tmp_dir)
        for size in sizes:
            data = work / f"data-{size}"
            print(f"{size} stored: seeding and growing …", file=sys.stderr, flush=True)
            seed(data, work)
            t0 = time.monotonic()
            grow(data / "perdure.sqlite3", size)
            grown[size] = time.monotonic() - t0
            print(f"{size} stored: grown in {grown[size]:.1f} s", file=sys.stderr, flush=True)
        # A B C A B C: each round measures a fresh copy, so no size inherits another round's rows.
        for i in range(args.rounds):
            for size in sizes:
                copy = work / f"round-{size}"
                shutil.rmtree(copy, ignore_errors=True)
                shutil.copytree(work / f"data-{size}", copy)
                settle(copy)
                print(f"round {i}: {size} stored …", file=sys.stderr, flush=True)
                rounds[size].append(measure(copy, work, args, f"{size}-{i}"))
                shutil.rmtree(copy)
    keys = (
        "throughput_per_s",
        "p99_ms",
        "server_cpu_ms_per_inv",
        "written_kib_per_inv",
        "server_peak_rss_mib",
        "db_mib",
    )
    report(args.n, keys, rounds, grown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
