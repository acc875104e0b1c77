"""What a commit costs the SQLite store as history grows, page by page: Greeter-shaped invocation
lifecycles (a commit stores 16 new invocations with their input entry and completes the 16 of the
commit before: output entries, completed record) committed through `SqliteStorage` itself against
a store already holding N completed invocations.

    python -m bench.scale_pages --stored 1000,1000000 --commits 128

With the background checkpoints held off, the WAL keeps every frame of the run; each frame's page
number is mapped to its B-tree (`dbstat`). Per size: WAL frames per commit (what each commit
writes and fsyncs), the distinct pages the run dirtied (what the next checkpoint writes into the
database file, scattered over it), the bytes SQLite read (page-cache misses, from /proc rchar),
the commit latency, each by B-tree where it applies. The stores are kept in `--workdir`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
import uuid
from pathlib import Path

from perdure.protocol.ids import InvocationId
from perdure.server.processor.batch import WriteBatch, index_of
from perdure.server.processor.model import COMPLETED, INVOKED, Invocation, Outcome, Target, encode_record
from perdure.server.storage.sqlite import DB_FILE, SqliteStorage

PER_COMMIT = 16
FILL_BATCH = 20_000


def _record(now_ms: int, status: str, raw: bytes) -> Invocation:
    done = status == COMPLETED
    return Invocation(
        id=InvocationId.from_raw(raw),
        target=Target("Greeter", "greet", None, "service", None),
        status=status,
        created_at_ms=now_ms - 10,
        modified_at_ms=now_ms - 5,
        completion_retention_ms=86_400_000,
        journal_retention_ms=86_400_000,
        completed_at_ms=now_ms - 5 if done else None,
        outcome=Outcome(value=b'"Hello, Sarah!"') if done else None,
        journal_length=3,
    )


def _put(b: WriteBatch, inv: Invocation) -> None:
    b.invocations[inv.id.raw] = encode_record(inv)
    b.index[inv.id.raw] = index_of(inv)


def _new_raw() -> bytes:
    return int.from_bytes(os.urandom(8), "big").to_bytes(8, "big") + uuid.uuid4().bytes


async def fill(storage: SqliteStorage, n: int) -> None:
    """n completed invocations with three journal entries each, ids in key order (a bulk load)."""
    now = int(time.time() * 1000)
    ids = sorted(_new_raw() for _ in range(n))
    for start in range(0, n, FILL_BATCH):
        b = WriteBatch()
        for raw in ids[start : start + FILL_BATCH]:
            _put(b, _record(now, COMPLETED, raw))
            b.journal += [(raw, idx, 0x0400 + idx, os.urandom(60), now) for idx in range(3)]
        await storage.commit_batch(b)


def _rchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    return 0


def _wal_pages(wal: Path) -> list[int]:
    data = wal.read_bytes()
    page_size = struct.unpack(">I", data[8:12])[0]
    frame = 24 + page_size
    return [struct.unpack(">I", data[off : off + 4])[0] for off in range(32, len(data) - frame + 1, frame)]


async def probe(storage: SqliteStorage, commits: int) -> dict[str, object]:
    writer = storage._writer
    assert writer is not None
    storage._checkpointer.written = lambda nbytes: False  # type: ignore[method-assign]
    writer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    now = int(time.time() * 1000)
    latencies, reads = [], []
    pending: list[bytes] = []
    for _ in range(commits):
        b = WriteBatch()
        for raw in pending:
            _put(b, _record(now, COMPLETED, raw))
            b.journal += [(raw, 1, 0x0401, os.urandom(40), now), (raw, 2, 0x0402, b"x", now)]
        pending = [_new_raw() for _ in range(PER_COMMIT)]
        for raw in pending:
            _put(b, _record(now, INVOKED, raw))
            b.journal.append((raw, 0, 0x0400, os.urandom(60), now))
        r0, t0 = _rchar(), time.perf_counter()
        await storage.commit_batch(b)
        latencies.append((time.perf_counter() - t0) * 1000)
        reads.append(_rchar() - r0)
    pages = _wal_pages(storage.path.with_name(storage.path.name + "-wal"))
    names = dict(writer.execute("SELECT pageno, name FROM dbstat").fetchall())
    frames = collections.Counter(names.get(p, "ptrmap/free") for p in pages)
    distinct = collections.Counter(names.get(p, "ptrmap/free") for p in set(pages))
    q = statistics.quantiles(latencies, n=100)
    return {
        "wal_frames_per_commit": round(len(pages) / commits, 1),
        "distinct_pages_per_inv": round(len(set(pages)) / (commits * PER_COMMIT), 2),
        "read_kib_per_commit": round(statistics.fmean(reads) / 1024, 1),
        "commit_p50_ms": round(q[49], 2),
        "commit_p99_ms": round(q[98], 2),
        "frames_per_commit_by_btree": {k: round(v / commits, 1) for k, v in frames.most_common()},
        "distinct_pages_by_btree": dict(distinct.most_common()),
    }


async def run_size(work: Path, stored: int, commits: int) -> dict[str, object]:
    base = work / f"store-{stored}"
    if not (base / DB_FILE).exists():
        storage = SqliteStorage(base)
        await storage.open()
        await fill(storage, stored)
        await storage.close()
    copy = work / f"probe-{stored}"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(base, copy)
    storage = SqliteStorage(copy)
    await storage.open()
    try:
        return await probe(storage, commits)
    finally:
        await storage.close()
        shutil.rmtree(copy)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stored", default="1000,1000000")
    parser.add_argument("--commits", type=int, default=128)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perdure-scale-pages-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for size in (int(s) for s in args.stored.split(",")):
            print(size, asyncio.run(run_size(work, size, args.commits)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
