"""WAL checkpoints run off the commit path: the writer never checkpoints, a big write is copied
into the database by the checkpointer, and the WAL it inflated is truncated afterwards."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.storage.checkpointer import WAL_SIZE_LIMIT_BYTES
from perdure.server.storage.sqlite import SqliteStorage

BIG = 80 << 20  # a WAL this big must shrink back to the limit


def journal_batch(raw_id: bytes, idx: int, body: bytes) -> WriteBatch:
    b = WriteBatch()
    b.invocations[raw_id] = b'{"status": "invoked", "s": "Svc", "c": 0}'  # a journal has its record
    b.journal.append((raw_id, idx, 0x0400, body, 0))
    return b


async def test_a_big_write_is_checkpointed_in_the_background_and_the_wal_shrinks(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path)
    await storage.open()
    try:
        raw = bytes(24)
        await storage.commit_batch(journal_batch(raw, 0, b"x" * BIG))
        wal = tmp_path / "perdure.sqlite3-wal"
        assert wal.stat().st_size > BIG  # the write is in the WAL
        deadline = time.monotonic() + 60
        while storage._checkpointer.checkpoints == 0:
            assert time.monotonic() < deadline, "no checkpoint ran"
            await asyncio.sleep(0.05)
        # The next commit starts the WAL over and truncates it to the limit.
        await storage.commit_batch(journal_batch(raw, 1, b"small"))
        assert wal.stat().st_size <= WAL_SIZE_LIMIT_BYTES
        entries = storage.get_journal(raw)
        assert [len(e.body) for e in entries] == [BIG, 5]
    finally:
        await storage.close()
    # Everything is in the database file itself, readable without the WAL.
    conn = sqlite3.connect(tmp_path / "perdure.sqlite3")
    try:
        assert conn.execute("SELECT COUNT(*), SUM(LENGTH(body)) FROM journal").fetchone() == (2, BIG + 5)
    finally:
        conn.close()


async def test_under_steady_commits_the_wal_starts_over_instead_of_growing(tmp_path: Path) -> None:
    """A background pass alone never lets SQLite restart the WAL while commits keep coming; the
    writer's catch-up after each pass does, so the WAL stays near one pass's worth of pages."""
    storage = SqliteStorage(tmp_path)
    await storage.open()
    rng = random.Random(7)
    try:
        for _ in range(800):
            b = WriteBatch()
            for _row in range(20):  # random keys: each row dirties its own leaf page
                b.op(Op.STATE_SET, "Svc", rng.randbytes(12).hex(), b"k", b"v" * 300)
            await storage.commit_batch(b)
        wal = (tmp_path / "perdure.sqlite3-wal").stat().st_size
        # Without the catch-up the WAL holds every page ever written (about 16,000 frames, 64 MB).
        assert wal < 24 << 20, f"WAL grew to {wal >> 20} MiB"
        assert storage._checkpointer.catch_ups >= 1
        _, (service, key, _, value) = b.ops[-1]
        assert storage.get_state(service, key) == {b"k": value}
    finally:
        await storage.close()
