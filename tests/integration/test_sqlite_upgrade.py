"""Data directories of schema versions 1 and 2 open, are upgraded to version 3 in one transaction,
answer exactly as before, and go on working; a store newer than the code is refused.

Version 1 keyed invocations and the journal by the random invocation id; version 2 stores them in
insertion order; version 3 makes the tables of user-sized values (state, promise, schedule,
limit_rule) rowid tables. The old stores are the real processor's own rows, written by the
current code, then put back into the old tables by SQL (`data/sqlite_schema_v1.sql`, the old
schema verbatim; version 2's tables are version 3's, those four WITHOUT ROWID)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.ids import InvocationId
from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.processor.limits import Rule
from perdure.server.processor.model import Outcome
from perdure.server.processor.promises import Promise, encode_promise
from perdure.server.processor.schedules import Schedule
from perdure.server.storage.interface import StorageError
from perdure.server.storage.sqlite import DB_FILE, SqliteStorage
from perdure.server.storage.sqlite_layout import SCHEMA_VERSION, stored_version, upgrade
from tests.integration.test_query_engine import GREETER, World, counter, make_engine, rows

DATA = Path(__file__).parent / "data"
V1_SCHEMA = (DATA / "sqlite_schema_v1.sql").read_text()
ORPHAN = bytes(range(24))  # a journal row whose record is gone: the upgrade drops it
ROWID_IN_V3 = ("state", "promise", "schedule", "limit_rule")  # WITHOUT ROWID in versions 1 and 2
BIG = 1 << 20  # a value on overflow pages


def without_rowid(conn: sqlite3.Connection) -> set[str]:
    sql = conn.execute("SELECT name, sql FROM sqlite_schema WHERE type = 'table'").fetchall()
    return {name for name, text in sql if "WITHOUT ROWID" in text.upper()}


def v2_table(conn: sqlite3.Connection, table: str) -> str:
    """SQL that moves `table` aside to `<table>_v3` and creates it as version 2 had it."""
    (sql,) = conn.execute("SELECT sql FROM sqlite_schema WHERE name = ?", (table,)).fetchone()
    return f"ALTER TABLE {table} RENAME TO {table}_v3; {sql} WITHOUT ROWID"


def downgrade_to_v2(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.executescript(
            "BEGIN;"
            + "".join(
                f"{v2_table(conn, t)}; INSERT INTO {t} SELECT * FROM {t}_v3; DROP TABLE {t}_v3;"
                for t in ROWID_IN_V3
            )
            + "UPDATE meta SET value = CAST('2' AS BLOB) WHERE key = 'schema_version';"
            "COMMIT;"
        )
        assert without_rowid(conn) >= set(ROWID_IN_V3)
    finally:
        conn.close()


def downgrade_to_v1(db: Path) -> None:
    downgrade_to_v2(db)  # versions 1 and 2 have the same state, promise, schedule, limit tables
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.executescript(
            "BEGIN;"
            "DROP INDEX invocation_status; DROP INDEX invocation_expiry;"
            "ALTER TABLE invocation RENAME TO invocation_v2; ALTER TABLE journal RENAME TO journal_v2;"
            f"{V1_SCHEMA};"
            "INSERT INTO invocation SELECT id, status, service, key, created_at, expires_at, record "
            "FROM invocation_v2;"
            "INSERT INTO journal SELECT i.id, j.idx, j.type, j.body, j.appended_at "
            "FROM journal_v2 j JOIN invocation_v2 i ON i.seq = j.inv;"
            "DROP TABLE journal_v2; DROP TABLE invocation_v2;"
            "UPDATE meta SET value = CAST('1' AS BLOB) WHERE key = 'schema_version';"
            "COMMIT;"
        )
        conn.execute("INSERT INTO journal VALUES (?, 0, 1024, x'00', 1)", (ORPHAN,))
        assert "seq" not in {r[1] for r in conn.execute("PRAGMA table_info(invocation)")}
    finally:
        conn.close()


def answers(storage: SqliteStorage, ids: list[str]) -> dict[str, Any]:
    """Everything the processor and the sweeper read from the store."""
    raws = [InvocationId.parse(i).raw for i in ids]
    return {
        "records": [storage.get_invocation(r) for r in raws],
        "journals": [storage.get_journal(r) for r in raws],
        "running": sorted((i.id.raw, len(i.journal)) for i in storage.load_running()),
        "expired": sorted(storage.expired(1 << 62, 100)),
        "timers": storage.load_timers(100),
        "state": [storage.get_state("Counter", k) for k in ("c1", "c3")],
        "promises": [storage.get_promise("Flow", "run1", n) for n in ("small", "big", "none")],
        "locks": storage.load_locks(),
        "inbox": storage.load_inbox(),
        "limits": storage.load_limits(),
        "schedules": storage.load_schedules(),
        "dedup": storage.get_dedup("topic-0"),
    }


async def journal_rows(world: World) -> list[dict[str, Any]]:
    engine = make_engine(world)
    await engine.open()
    try:
        return await rows(engine, "SELECT id, index, entry_type, name FROM sys_journal ORDER BY id, index")
    finally:
        await engine.close()


async def fill(world: World) -> dict[str, str]:
    """Every kind of row: a completed, a sleeping and a lock-holding invocation, one queued behind
    it, object state (one value big), promises, a rule with its bucket, a schedule, a dedup mark."""
    done = await world.send(GREETER, "Ann")
    await world.run(done, "one", 1, b'"x"')
    await world.finish(done, b'"Hello, Ann!"')
    sleeping = await world.send(GREETER, "Bob")
    await world.run(sleeping, "one", 1, b'"y"')
    await world.sdk(
        sleeping, pb.SleepCommandMessage(wake_up_time=world.now_ms + 600_000, result_completion_id=2)
    )
    obj = await world.send(counter("c1"), 5)
    await world.sdk(obj, pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"5")))
    await world.finish(obj, b"5")
    holder = await world.send(counter("c2"), 1)
    queued = await world.send(counter("c2"), 2)
    extra = WriteBatch()
    extra.op(Op.STATE_SET, "Counter", "c3", b"a", b"1")
    extra.op(Op.STATE_SET, "Counter", "c3", b"big", b"b" * BIG)
    extra.op(Op.PROMISE_PUT, "Flow", "run1", "small", encode_promise(Promise(Outcome(value=b'"ok"'))))
    extra.op(Op.PROMISE_PUT, "Flow", "run1", "big", encode_promise(Promise(Outcome(value=b"p" * BIG))))
    extra.op(Op.RULE_PUT, "Flow", Rule("Flow", concurrency=2, description="two at a time").encode())
    extra.op(Op.RULE_TAT, "Flow", 123)
    schedule = Schedule("nightly", "Greeter", "greet", None, b'"Nora"', cron="0 3 * * *", paused=True)
    extra.op(Op.SCHEDULE_PUT, "nightly", schedule.encode())
    extra.op(Op.DEDUP_SET, "topic-0", 41)
    await world.storage.commit_batch(extra)
    return {"done": done, "sleeping": sleeping, "obj": obj, "holder": holder, "queued": queued}


@pytest.mark.parametrize("downgrade", [downgrade_to_v1, downgrade_to_v2], ids=["v1", "v2"])
async def test_an_older_store_is_upgraded_and_answers_as_before(
    tmp_path: Path, downgrade: Callable[[Path], None]
) -> None:
    data = tmp_path / "data"
    world = World(SqliteStorage(data))
    await world.open()
    inv = await fill(world)
    ids = list(inv.values())
    before = answers(world.storage, ids)
    journal_before = await journal_rows(world)
    await world.close()
    assert before["journals"][0] and before["running"] and before["expired"] and before["timers"]
    assert before["locks"] and before["inbox"] and before["limits"][0] and before["schedules"]
    assert before["promises"][1] and before["dedup"] == 41 and len(before["state"][1][b"big"]) == BIG

    downgrade(data / DB_FILE)
    storage = SqliteStorage(data)
    await storage.open()  # the upgrade
    try:
        assert answers(storage, ids) == before
        assert storage.get_journal(ORPHAN) == []
    finally:
        await storage.close()
    world = World(SqliteStorage(data))
    await world.open()  # the processor's recovery
    try:
        assert await journal_rows(world) == journal_before
        conn = sqlite3.connect(data / DB_FILE)
        try:
            version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
            assert int(bytes(version).decode()) == SCHEMA_VERSION == 3
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            assert not {t for t in tables if t.endswith(("_v1", "_v2"))}
            assert not without_rowid(conn) & {"invocation", "journal", *ROWID_IN_V3}
            orphans = "SELECT count(*) FROM journal WHERE inv NOT IN (SELECT seq FROM invocation)"
            assert conn.execute(orphans).fetchone() == (0,)
        finally:
            conn.close()
        # The upgraded store goes on: the sleeper completes, the lock passes to the queued call,
        # state and promises are written again, a new invocation is stored.
        await world.finish(inv["sleeping"], b'"Hello, Bob!"')
        await world.finish(inv["holder"], b"1")
        await world.sdk(inv["queued"], pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"3")))
        await world.finish(inv["queued"], b"3")
        new = await world.send(GREETER, "Cy")
        await world.finish(new, b'"Hello, Cy!"')
        again = WriteBatch()
        again.op(Op.STATE_SET, "Counter", "c3", b"big", b"c" * BIG)
        again.op(Op.PROMISE_PUT, "Flow", "run1", "small", b"{}")
        await world.storage.commit_batch(again)
        after = answers(world.storage, [inv["sleeping"], new, inv["queued"]])
        assert [len(j) for j in after["journals"][:2]] == [len(before["journals"][1]) + 1, 2]  # + output
        assert [r.status for r in after["records"]] == ["completed"] * 3
        assert after["running"] == [] and after["locks"] == {} and after["inbox"] == {}
        assert world.storage.get_state("Counter", "c2") == {b"count": b"3"}
        assert after["state"][1] == {b"a": b"1", b"big": b"c" * BIG}
        assert after["promises"][:2] == [b"{}", before["promises"][1]]
        assert after["limits"] == before["limits"] and after["schedules"] == before["schedules"]
    finally:
        await world.close()


async def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path)
    await storage.open()
    await storage.close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    with conn:
        conn.execute("UPDATE meta SET value = CAST('4' AS BLOB) WHERE key = 'schema_version'")
    conn.close()
    storage = SqliteStorage(tmp_path)
    with pytest.raises(StorageError, match="schema version 4; this Perdure reads up to 3"):
        await storage.open()
    await storage.close()


SCHEMA = (Path(__file__).parents[2] / "perdure" / "server" / "storage" / "schema.sql").read_text()


def test_a_new_store_is_made_in_one_transaction(tmp_path: Path) -> None:
    """A failure (or a power loss) part way through making a new store leaves nothing of it, so
    the next start makes it again; statement by statement, the tables made before the failure
    stayed without their version row and the next start took them for version 1."""
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError):
            upgrade(conn, SCHEMA + "\nCREATE TABLE broken (;")
        assert conn.execute("SELECT name FROM sqlite_schema").fetchall() == []
        upgrade(conn, SCHEMA)
        assert stored_version(conn) == SCHEMA_VERSION
        assert not without_rowid(conn) & {"invocation", "journal", *ROWID_IN_V3}
    finally:
        conn.close()


async def test_a_version_2_store_cut_before_its_version_row_opens(tmp_path: Path) -> None:
    """What a power loss during the first start left with older code: the version 2 tables (some
    of them) and no version row. It is read as version 2 and upgraded (the missing tables made)."""
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    try:
        head = SCHEMA.split("CREATE TABLE IF NOT EXISTS promise")[0]  # up to the inbox table
        conn.executescript(head)
        conn.executescript(f"{v2_table(conn, 'state')}; DROP TABLE state_v3;")
        conn.execute("INSERT INTO state VALUES ('Counter', 'c1', x'6b', x'76')")
        assert stored_version(conn) == 2
    finally:
        conn.close()
    storage = SqliteStorage(tmp_path)
    await storage.open()
    try:
        assert storage.get_journal(bytes(24)) == []
        assert storage.load_running() == []
        assert storage.get_state("Counter", "c1") == {b"k": b"v"}
        assert storage.load_schedules() == [] and storage.get_promise("Flow", "f", "p") is None
    finally:
        await storage.close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert bytes(row[0]).decode() == str(SCHEMA_VERSION)
        assert not without_rowid(conn) & {"invocation", "journal", *ROWID_IN_V3}
    finally:
        conn.close()
