"""A big journal entry costs its own write and read, not every small append stored next to it.

SQLite compares a search key against a whole cell; in a WITHOUT ROWID table a cell holds the whole
row, so every B-tree search that passes a 10 MB journal body reads its 10 MB of overflow pages.
An invocation that started before a big one and appends after it has its journal rows right next
to the big entry: each of its appends read the big body again (1,000 steps: 10-100 s). Here the
bytes the process reads from the database files (/proc rchar) while 40 small entries are appended
next to a 10 MB one stay far below one re-read of it per append."""

from __future__ import annotations

from pathlib import Path

from perdure.server.processor.batch import WriteBatch
from perdure.server.storage.sqlite import SqliteStorage

BIG = 10 << 20
APPENDS = 40


def read_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def entry(raw: bytes, idx: int, body: bytes) -> WriteBatch:
    b = WriteBatch()
    b.invocations[raw] = b'{"status": "invoked", "s": "Svc", "c": 0}'
    b.journal.append((raw, idx, 0x0400 + idx, body, 0))
    return b


async def test_appends_next_to_a_big_entry_do_not_read_it_again(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path)
    await storage.open()
    try:
        older, newer = bytes(23) + b"\x01", bytes(23) + b"\x02"
        await storage.commit_batch(entry(older, 0, b"input"))
        await storage.commit_batch(entry(newer, 0, b"x" * BIG))  # stored after: its rows follow
        before = read_bytes()
        for idx in range(1, APPENDS + 1):
            await storage.commit_batch(entry(older, idx, b"step"))
        read = read_bytes() - before
        assert read < 4 * BIG, f"{APPENDS} small appends read {read >> 20} MiB"
        assert [len(e.body) for e in storage.get_journal(older)] == [5] + [4] * APPENDS
        assert [len(e.body) for e in storage.get_journal(newer)] == [BIG]
    finally:
        await storage.close()
