"""A big value costs its own write and read, not every small write or read stored next to it.

SQLite compares a search key against a whole cell; in a WITHOUT ROWID table a cell holds the whole
row, so every B-tree search that passes a 10 MB value reads its 10 MB of overflow pages. An
invocation that started before a big one and appends after it has its journal rows right next
to the big entry: each of its appends read the big body again (1,000 steps: 10-100 s). The same
held for a 10 MB state value, promise value or schedule body and the keys stored beside it. Here
the bytes the process reads from the database files (/proc rchar) while small rows next to a
10 MB one are written and read stay far below one re-read of it per statement."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from perdure.server.processor.batch import Op, WriteBatch
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


def ops(*rows: tuple[Op, tuple[object, ...]]) -> WriteBatch:
    b = WriteBatch()
    b.ops.extend(rows)
    return b


# Per keyed table: how to store a value under a key's position (0, 1, 2: neighbours in key
# order, 1 holds the big value); the objects and workflow runs beside them hold small values.
PUT: dict[str, Callable[[int, bytes], tuple[Op, tuple[object, ...]]]] = {
    "state": lambda n, v: (Op.STATE_SET, ("Blob", "k1", b"s%d" % n, v)),  # keys of one object
    "promise": lambda n, v: (Op.PROMISE_PUT, ("Wf", "w1", f"p{n}", v)),  # promises of one run
    "schedule": lambda n, v: (Op.SCHEDULE_PUT, (f"s{n}", v)),
}
SMALL_KEYS = {
    "state": [(Op.STATE_SET, ("Blob", "k0", b"a", b"0")), (Op.STATE_SET, ("Blob", "k2", b"a", b"0"))],
    "promise": [(Op.PROMISE_PUT, ("Wf", "w0", "a", b"0")), (Op.PROMISE_PUT, ("Wf", "w2", "a", b"0"))],
    "schedule": [],
}


def read_neighbours(storage: SqliteStorage, table: str) -> list[object]:
    if table == "state":
        return [storage.get_state("Blob", "k0"), storage.get_state("Blob", "k2")]
    if table == "promise":
        return [storage.get_promise("Wf", "w1", f"p{n}") for n in (0, 2)]
    return []  # schedules are read all at once at start


@pytest.mark.parametrize("table", ["state", "promise", "schedule"])
async def test_keys_next_to_a_big_value_do_not_read_it_again(tmp_path: Path, table: str) -> None:
    put = PUT[table]
    storage = SqliteStorage(tmp_path)
    await storage.open()
    try:
        await storage.commit_batch(ops(put(0, b"0"), put(2, b"0"), *SMALL_KEYS[table]))
        await storage.commit_batch(ops(put(1, b"x" * BIG)))
        before = read_bytes()
        for i in range(1, APPENDS // 2 + 1):
            await storage.commit_batch(ops(put(0, b"%d" % i), put(2, b"%d" % i)))
            read_neighbours(storage, table)
        read = read_bytes() - before
        assert read < 4 * BIG, f"{APPENDS} small writes beside a big {table} read {read >> 20} MiB"
        last = b"%d" % (APPENDS // 2)
        if table == "state":
            assert storage.get_state("Blob", "k1") == {b"s0": last, b"s1": b"x" * BIG, b"s2": last}
            assert read_neighbours(storage, table) == [{b"a": b"0"}, {b"a": b"0"}]
        elif table == "promise":
            assert read_neighbours(storage, table) == [last, last]
            assert storage.get_promise("Wf", "w1", "p1") == b"x" * BIG
        else:
            assert storage.load_schedules() == [last, b"x" * BIG, last]
    finally:
        await storage.close()
