"""Retention reclaims storage: N completed Greeter-shaped invocations (record + 4 journal entries,
as a one-`ctx.run` call leaves them) are written to a fresh SQLite store, their retention runs
out, and the cleanup path the server runs (`Terminate(expire)` through the processor in batches of
1,000, one commit each, then incremental vacuum in 8 MiB steps) purges them, while small commits
go on beside it as live traffic would (the service is not stopped). Prints the store's size
(database + WAL) idle, full and after the cleanup, how long the cleanup took, and the latency of
the concurrent commits before and during it.

    python -m bench.retention --invocations 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from pathlib import Path

from bench.backup import beside_commits, summary
from perdure.protocol.ids import InvocationId
from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import Terminate
from perdure.server.processor.model import COMPLETED, Invocation, Outcome, Target, encode_record
from perdure.server.processor.processor import Processor
from perdure.server.runtime import RECLAIM_PAGES_PER_STEP, RETENTION_SWEEP_BATCH_MAX
from perdure.server.storage.sqlite import DB_FILE, SqliteStorage
from perdure.testing.simulation.schema import SIM_SCHEMA

WRITE_BATCH = 5_000
# A one-step Greeter journal: input, run command, run completion notification, output.
ENTRY_SIZES = (40, 30, 50, 45)


def _size(data_dir: Path) -> int:
    return sum(p.stat().st_size for p in data_dir.iterdir() if p.name.startswith(DB_FILE))


def _completed(now_ms: int) -> Invocation:
    iid = InvocationId(int.from_bytes(os.urandom(8), "big"), uuid.uuid4().bytes)
    inv = Invocation(
        id=iid,
        target=Target("Greeter", "greet", None, "service", None),
        status=COMPLETED,
        created_at_ms=now_ms - 10,
        modified_at_ms=now_ms - 5,
        completion_retention_ms=1,
        journal_retention_ms=1,
        completed_at_ms=now_ms - 5,
        outcome=Outcome(value=b'"Hello, Sarah!"'),
        journal_length=len(ENTRY_SIZES),
    )
    return inv


async def fill(storage: SqliteStorage, n: int) -> None:
    now = int(time.time() * 1000)
    for start in range(0, n, WRITE_BATCH):
        batch = WriteBatch()
        for _ in range(min(WRITE_BATCH, n - start)):
            inv = _completed(now)
            batch.invocations[inv.id.raw] = encode_record(inv)
            for idx, size in enumerate(ENTRY_SIZES):
                batch.journal.append((inv.id.raw, idx, 0x0400 + idx, os.urandom(size), now))
        await storage.commit_batch(batch)


async def clean(storage: SqliteStorage) -> int:
    processor = Processor(storage, SIM_SCHEMA)
    purged = 0
    while expired := storage.expired(int(time.time() * 1000), RETENTION_SWEEP_BATCH_MAX):
        now = int(time.time() * 1000)
        for raw in expired:
            processor.apply(Terminate(raw, "expire", 0), now)
        batch, _effects = processor.take()
        await storage.commit_batch(batch)
        processor.committed()
        purged += len(expired)
    while await storage.reclaim(RECLAIM_PAGES_PER_STEP) >= RECLAIM_PAGES_PER_STEP:
        pass
    return purged


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="perdure-retention-") as tmp:
        data = Path(tmp)
        storage = SqliteStorage(data)
        await storage.open()
        await storage.reclaim(RECLAIM_PAGES_PER_STEP)
        idle = _size(data)
        t0 = time.monotonic()
        await fill(storage, n)
        full = _size(data)
        t1 = time.monotonic()
        purged, clean_s, idle_ms, during_ms = await beside_commits(storage, clean(storage))
        after = _size(data)
        await storage.close()
    mib = 1024 * 1024
    print(f"invocations          {n:,} (purged {purged:,})")
    print(f"store idle           {idle / mib:8.2f} MiB")
    print(f"store full           {full / mib:8.2f} MiB   (written in {t1 - t0:.1f} s)")
    print(f"store after cleanup  {after / mib:8.2f} MiB   (cleanup {clean_s:.1f} s, {n / clean_s:,.0f}/s)")
    print(f"commits before       {summary(idle_ms)}")
    print(f"commits during       {summary(during_ms)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().invocations))
