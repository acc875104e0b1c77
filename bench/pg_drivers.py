"""asyncpg against psycopg 3 (async) for Perdure's PostgreSQL write door: the same
`perdure_commit` call with the same batches, client CPU and wall time per batch.

    python -m bench.pg_drivers [--batches 400] [--size 50]

Starts a private PostgreSQL 15 cluster (tests/support/postgres.py; as the postgres
user when run as root) with fsync on, so every commit waits for its WAL flush."""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import asyncpg
import orjson
import psycopg

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.storage.pg_batch import COMMIT_SQL, commit_args
from perdure.server.storage.pg_schema import migrate
from tests.support.postgres import shared_cluster

OWNER = "bench"


def make_batch(n: int, round_no: int) -> WriteBatch:
    """n invocations of a one-step handler: record upsert, 3 journal entries, a state write."""
    b = WriteBatch()
    for i in range(n):
        raw = os.urandom(24)
        rec = {"status": "completed", "s": "Greeter", "k": f"k{i}", "h": "greet", "c": 1, "ca": 2, "cr": 3}
        b.invocations[raw] = orjson.dumps({**rec, "pad": "x" * 200})
        for idx in range(3):
            b.journal.append((raw, idx, 1024 + idx, b"\x0a\x05hello" * 4, 12345))
        b.op(Op.STATE_SET, "Counter", f"k{round_no}-{i}", b"count", b"1")
    return b


async def run_asyncpg(dsn: str, batches: list[WriteBatch], epochs: list[int]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for seq, b in enumerate(batches, 1):
            await conn.execute(COMMIT_SQL, OWNER, epochs, seq, 6, *commit_args(b))
    finally:
        await conn.close()


async def run_psycopg(dsn: str, batches: list[WriteBatch], epochs: list[int]) -> None:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=0)
    sql = "SELECT perdure_commit(" + ", ".join(["%s"] * 28) + ")"
    try:
        for seq, b in enumerate(batches, 1):
            await conn.execute(sql, (OWNER, epochs, seq, 6, *commit_args(b)))
    finally:
        await conn.close()


def measure(name: str, fn: Callable[[], Awaitable[None]], batches: int, size: int) -> None:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    asyncio.run(fn())  # type: ignore[arg-type]
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    print(
        f"{name:9s} {batches} batches x {size}: {wall / batches * 1000:.2f} ms/batch wall, "
        f"{cpu / batches * 1000:.2f} ms/batch client CPU, "
        f"{cpu / (batches * size) * 1e6:.1f} us CPU/invocation"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=400)
    ap.add_argument("--size", type=int, default=50)
    args = ap.parse_args()
    cluster = shared_cluster()
    dsn = cluster.create_database("bench")
    with psycopg.connect(dsn, autocommit=True) as c:
        migrate(c)
        rows = c.execute(
            "UPDATE partition_lease SET owner = %s, epoch = epoch + 1, expires_at = 'infinity' "
            "RETURNING partition, epoch",
            (OWNER,),
        ).fetchall()
    epochs = [0] * 64
    for p, e in rows:
        epochs[p] = e
    for rnd in range(2):
        for name, runner in (("asyncpg", run_asyncpg), ("psycopg", run_psycopg)):
            batches = [make_batch(args.size, rnd * 10_000 + i) for i in range(args.batches)]
            measure(name, lambda r=runner, bs=batches: r(dsn, bs, epochs), args.batches, args.size)  # type: ignore[misc]


if __name__ == "__main__":
    main()
