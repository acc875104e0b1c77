"""A data directory of schema version 1 (invocations and journal keyed by the random invocation id)
opens, is upgraded to the insertion-ordered layout of version 2, answers exactly as before, and
goes on working; a store newer than the code is refused.

The version 1 store is the real processor's own rows: written by the current code, then put back
into the version 1 tables (`data/sqlite_schema_v1.sql`, the old schema verbatim) by SQL."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.ids import InvocationId
from perdure.server.storage.interface import StorageError
from perdure.server.storage.sqlite import DB_FILE, SqliteStorage
from perdure.server.storage.sqlite_layout import SCHEMA_VERSION, stored_version, upgrade
from tests.integration.test_query_engine import GREETER, World, counter, make_engine, rows

V1_SCHEMA = (Path(__file__).parent / "data" / "sqlite_schema_v1.sql").read_text()
ORPHAN = bytes(range(24))  # a journal row whose record is gone: the upgrade drops it


def downgrade_to_v1(db: Path) -> None:
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
        "state": storage.get_state("Counter", "c1"),
    }


async def journal_rows(world: World) -> list[dict[str, Any]]:
    engine = make_engine(world)
    await engine.open()
    try:
        return await rows(engine, "SELECT id, index, entry_type, name FROM sys_journal ORDER BY id, index")
    finally:
        await engine.close()


async def test_a_version_1_store_is_upgraded_and_answers_as_before(tmp_path: Path) -> None:
    data = tmp_path / "data"
    world = World(SqliteStorage(data))
    await world.open()
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
    ids = [done, sleeping, obj]
    before = answers(world.storage, ids)
    journal_before = await journal_rows(world)
    await world.close()
    assert before["journals"][0] and before["running"] and before["expired"] and before["timers"]

    downgrade_to_v1(data / DB_FILE)
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
            assert int(bytes(version).decode()) == SCHEMA_VERSION == 2
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
            assert not tables & {"invocation_v1", "journal_v1"}
            orphans = "SELECT count(*) FROM journal WHERE inv NOT IN (SELECT seq FROM invocation)"
            assert conn.execute(orphans).fetchone() == (0,)
        finally:
            conn.close()
        # The upgraded store goes on: the sleeper completes, a new invocation is stored.
        await world.finish(sleeping, b'"Hello, Bob!"')
        new = await world.send(GREETER, "Cy")
        await world.finish(new, b'"Hello, Cy!"')
        after = answers(world.storage, [sleeping, new])
        assert [len(j) for j in after["journals"]] == [len(before["journals"][1]) + 1, 2]  # + output
        assert [r.status for r in after["records"]] == ["completed", "completed"]
        assert after["running"] == []
    finally:
        await world.close()


async def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    storage = SqliteStorage(tmp_path)
    await storage.open()
    await storage.close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    with conn:
        conn.execute("UPDATE meta SET value = CAST('3' AS BLOB) WHERE key = 'schema_version'")
    conn.close()
    storage = SqliteStorage(tmp_path)
    with pytest.raises(StorageError, match="schema version 3"):
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
    finally:
        conn.close()


async def test_a_version_2_store_cut_before_its_version_row_opens(tmp_path: Path) -> None:
    """What a power loss during the first start left with older code: the version 2 tables (some
    of them) and no version row. It is read as version 2, completed and opened, not upgraded."""
    conn = sqlite3.connect(tmp_path / DB_FILE, isolation_level=None)
    try:
        head = SCHEMA.split("CREATE TABLE IF NOT EXISTS journal")[0]
        conn.executescript(head)
        assert stored_version(conn) == SCHEMA_VERSION
    finally:
        conn.close()
    storage = SqliteStorage(tmp_path)
    await storage.open()
    try:
        assert storage.get_journal(bytes(24)) == []
        assert storage.load_running() == []
    finally:
        await storage.close()
    conn = sqlite3.connect(tmp_path / DB_FILE)
    try:
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        assert bytes(row[0]).decode() == str(SCHEMA_VERSION)
    finally:
        conn.close()
