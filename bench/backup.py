"""Online backup and restore of a large SQLite store: fills a fresh store to `--size-gib` with
Greeter-shaped completed invocations (record + journal entries of `--entry-bytes`), then takes a
backup with the server's own path (`BackupRunner` -> `SqliteStorage.backup` on a reader connection
and thread of its own, manifest with SHA-256) while a writer keeps committing small batches, and
restores it (`perdure.server.backup.restore`: copy + SHA-256 verify + fsync). Prints backup and
restore time and the commit latency before and during the backup (the copy must not stall commits).

    nice -n 10 python -m bench.backup --size-gib 1
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from perdure.protocol.ids import InvocationId
from perdure.server.backup.location import LocalLocation
from perdure.server.backup.restore import restore
from perdure.server.backup.runner import BackupRunner, Job
from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.processor.model import COMPLETED, Invocation, Outcome, Target, encode_record
from perdure.server.storage.sqlite import DB_FILE, SqliteStorage

FILL_BATCH = 2_000
ENTRIES = 4
MIB = 1024 * 1024
T = TypeVar("T")


def _invocation(now_ms: int) -> Invocation:
    return Invocation(
        id=InvocationId(int.from_bytes(os.urandom(8), "big"), uuid.uuid4().bytes),
        target=Target("Greeter", "greet", None, "service", None),
        status=COMPLETED,
        created_at_ms=now_ms - 10,
        modified_at_ms=now_ms - 5,
        completion_retention_ms=86_400_000,
        journal_retention_ms=86_400_000,
        completed_at_ms=now_ms - 5,
        outcome=Outcome(value=b'"Hello, Sarah!"'),
        journal_length=ENTRIES,
    )


def _checkpoint(data: Path) -> int:
    """Fold the WAL into the database (a bulk fill outruns the server's passive checkpoints);
    returns the database file's size."""
    conn = sqlite3.connect(data / DB_FILE)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    finally:
        conn.close()
    return (data / DB_FILE).stat().st_size


async def fill(storage: SqliteStorage, data: Path, size_bytes: int, entry_bytes: int) -> int:
    now = int(time.time() * 1000)
    n = 0
    while n % (FILL_BATCH * 10) or _checkpoint(data) < size_bytes:
        batch = WriteBatch()
        for _ in range(FILL_BATCH):
            inv = _invocation(now)
            batch.invocations[inv.id.raw] = encode_record(inv)
            for idx in range(ENTRIES):
                batch.journal.append((inv.id.raw, idx, 0x0400 + idx, os.urandom(entry_bytes), now))
            n += 1
        await storage.commit_batch(batch)
    return n


async def commit_latencies(storage: SqliteStorage, stop: asyncio.Event, out: list[float]) -> None:
    """Small batches (one state write) back to back, as light traffic commits them."""
    i = 0
    while not stop.is_set():
        batch = WriteBatch()
        batch.ops.append((Op.STATE_SET, ("Counter", f"k{i % 100}", b"count", str(i).encode())))
        t0 = time.perf_counter()
        await storage.commit_batch(batch)
        out.append((time.perf_counter() - t0) * 1000)
        i += 1
        await asyncio.sleep(0.005)


async def beside_commits(
    storage: SqliteStorage, work: Awaitable[T]
) -> tuple[T, float, list[float], list[float]]:
    """Commit latencies for 5 s alone, then while `work` runs; returns its result, how long it
    took, and both latency lists (ms)."""
    idle: list[float] = []
    during: list[float] = []
    async with asyncio.TaskGroup() as tg:
        stop = asyncio.Event()
        probe = tg.create_task(commit_latencies(storage, stop, idle))
        await asyncio.sleep(5)
        stop.set()
        await probe
        stop = asyncio.Event()
        tg.create_task(commit_latencies(storage, stop, during))
        t0 = time.monotonic()
        try:
            result = await work
        finally:
            stop.set()
    return result, time.monotonic() - t0, idle, during


def summary(ms: list[float]) -> str:
    if not ms:
        return "none"
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return f"{len(ms):,} commits, p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(ms):.1f} ms"


async def main(size_gib: float, entry_bytes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="perdure-backup-bench-", dir=os.environ.get("TMPDIR")) as tmp:
        data, dest, into = Path(tmp) / "data", Path(tmp) / "backup", Path(tmp) / "restored"
        storage = SqliteStorage(data)
        await storage.open()
        t0 = time.monotonic()
        n = await fill(storage, data, int(size_gib * 1024 * MIB), entry_bytes)
        print(f"filled {n:,} invocations in {time.monotonic() - t0:.0f} s")
        size = _checkpoint(data)
        runner = BackupRunner(storage, data)

        async def backup() -> Job:
            job = await runner.request(str(dest))
            while job.status in ("queued", "running"):
                await asyncio.sleep(0.05)
            return job

        async with asyncio.TaskGroup() as tg:
            owner = tg.create_task(runner.run())
            job, backup_s, idle, during = await beside_commits(storage, backup())
            owner.cancel()
        assert job.status == "completed", job.error
        await storage.close()
        t2 = time.monotonic()
        restore(LocalLocation(dest), into, force=False, progress=lambda _d, _t: None)
        restore_s = time.monotonic() - t2
        backup_size = (dest / DB_FILE).stat().st_size
    print(f"store                {size / MIB:,.0f} MiB ({n:,} invocations)")
    mib = backup_size / MIB
    print(f"backup               {backup_s:.1f} s ({mib / backup_s:,.0f} MiB/s: copy, SHA-256, fsync)")
    print(f"restore              {restore_s:.1f} s ({mib / restore_s:,.0f} MiB/s: copy, verify, fsync)")
    print(f"commits before       {summary(idle)}")
    print(f"commits during       {summary(during)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--entry-bytes", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(main(args.size_gib, args.entry_bytes))
