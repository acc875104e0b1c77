"""The PostgreSQL store against the memory store the simulation trusts: the batches a seeded
simulation commits (every kind of write the processor makes: records, journals, timers, state,
locks, inboxes, promises, purges) are replayed onto a fresh PostgreSQL database and onto SQLite,
and every read of the storage interface must answer the same on all three. Plus: the schema is
built from empty by its numbered migrations, re-opening applies nothing twice, a stale node's
commit is fenced off and changes nothing, and bad store URLs are refused clearly."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from perdure.server.config import Settings
from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.storage.factory import check_store_url, describe_store, make_storage
from perdure.server.storage.memory import MemoryStorage
from perdure.server.storage.pg_schema import migrations
from perdure.server.storage.postgres import FencedError, PostgresStorage
from perdure.server.storage.sqlite import SqliteStorage
from perdure.testing.simulation.world import World
from tests.support.paths import perdure_executable
from tests.support.postgres import PostgresCluster, postgres_available, shared_cluster

pytestmark = pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 is not installed")

SEEDS = (3, 11, 29)
LONG_TTL_S = 3600.0  # tests that do not renew leases must not run into the local deadline
SHORT_TTL_S = 2.5
DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def cluster() -> PostgresCluster:
    return shared_cluster()


CHECK_EVERY = 4  # compare the stores after every 4th batch (and at the end)


def simulated_batches(seed: int) -> tuple[World, list[WriteBatch], dict[int, MemoryStorage]]:
    """Run one simulation seed: its world, every batch its memory store committed, and copies of
    that store after every CHECK_EVERY-th batch (keyed by the number of batches committed)."""
    world = World(seed)
    committed: list[WriteBatch] = []
    copies: dict[int, MemoryStorage] = {}
    commit = world.storage.commit_sync

    def recording(batch: WriteBatch) -> None:
        commit(batch)  # raises on an injected fault: then the batch did not commit
        committed.append(batch)
        if len(committed) % CHECK_EVERY == 0:
            copies[len(committed)] = world.storage.snapshot()

    world.storage.commit_sync = recording  # type: ignore[method-assign]
    world.run()
    copies[len(committed)] = world.storage.snapshot()
    return world, committed, copies


def snapshot(store: Any, mem: MemoryStorage) -> dict[str, Any]:
    """Everything the storage interface can read, over the keys the memory store knows."""
    ids = sorted(set(mem.invocations) | set(mem.journal))
    keys = sorted(set(mem.state) | {(s, k) for s, k, _ in mem.promises})
    return {
        "invocations": {raw: _record(store.get_invocation(raw)) for raw in ids},
        "journals": {raw: store.get_journal(raw) for raw in ids},
        "state": {sk: store.get_state(*sk) for sk in keys},
        "promises": {pk: store.get_promise(*pk) for pk in sorted(mem.promises)},
        "running": sorted((_record(i), i.journal) for i in store.load_running()),
        "locks": store.load_locks(),
        "inbox": store.load_inbox(),
        "timers": store.load_timers(1_000_000),
        "expired": sorted(store.expired(2**62, 1_000_000)),
    }


def _record(inv: Any) -> Any:
    return None if inv is None else (str(inv.id), inv.status, inv.target, inv.created_at_ms)


async def _replay(store: Any, batches: list[WriteBatch]) -> None:
    await store.open()
    for b in batches:
        await store.commit_batch(b)


async def _replay_checked(store: Any, batches: list[WriteBatch], copies: dict[int, MemoryStorage]) -> int:
    """Replay, comparing every read with the memory store's copy at the same point."""
    await store.open()
    checks = 0
    for n, b in enumerate(batches, 1):
        await store.commit_batch(b)
        mem = copies.get(n)
        if mem is not None:
            assert snapshot(store, mem) == snapshot(mem, mem), f"after batch {n}"
            checks += 1
    return checks


@pytest.mark.parametrize("seed", SEEDS)
def test_postgres_and_sqlite_read_back_what_the_memory_store_holds(
    seed: int, cluster: PostgresCluster, tmp_path: Path
) -> None:
    _, batches, copies = simulated_batches(seed)
    assert batches and any(b.ops for b in batches) and any(b.timers_delete for b in batches)
    assert any(mem.locks or mem.inbox for mem in copies.values())
    pg = PostgresStorage(cluster.create_database("store"), pool_size=2, lease_ttl_s=LONG_TTL_S)
    lite = SqliteStorage(tmp_path / "lite")

    async def go() -> tuple[int, int]:
        try:
            return await _replay_checked(pg, batches, copies), await _replay_checked(lite, batches, copies)
        finally:
            await pg.close()
            await lite.close()

    assert asyncio.run(go()) == (len(copies), len(copies))


def test_ordered_keyed_operations_end_as_the_last_one_left_them(cluster: PostgresCluster) -> None:
    b = WriteBatch()
    b.op(Op.STATE_SET, "Counter", "a", b"n", b"1")
    b.op(Op.STATE_CLEAR, "Counter", "a")
    b.op(Op.STATE_SET, "Counter", "a", b"n", b"2")
    b.op(Op.LOCK_SET, "Counter", "a", b"i" * 24)
    b.op(Op.LOCK_DELETE, "Counter", "a")
    b.op(Op.INBOX_ADD, "Counter", "a", 1, b"j" * 24)
    b.op(Op.INBOX_DELETE, "Counter", "a", 1)
    b.op(Op.INBOX_ADD, "Counter", "a", 2, b"k" * 24)
    b.op(Op.PROMISE_PUT, "Flow", "w", "p", b'{"o":null}')
    b.op(Op.PROMISE_CLEAR, "Flow", "w")
    b.op(Op.PROMISE_PUT, "Flow", "w", "q", b"{}")
    store = PostgresStorage(cluster.create_database("ops"), pool_size=1, lease_ttl_s=LONG_TTL_S)

    async def go() -> None:
        await _replay(store, [b])
        try:
            assert store.get_state("Counter", "a") == {b"n": b"2"}
            assert store.load_locks() == {}
            assert store.load_inbox() == {("Counter", "a"): [(2, b"k" * 24)]}
            assert store.get_promise("Flow", "w", "p") is None
            assert store.get_promise("Flow", "w", "q") == b"{}"
        finally:
            await store.close()

    asyncio.run(go())


def test_dedup_marks_are_written_with_the_batch_on_postgres_and_sqlite(
    cluster: PostgresCluster, tmp_path: Path
) -> None:
    b = WriteBatch()
    b.op(Op.DEDUP_SET, "kafka/sub/p0", 4)
    b.op(Op.DEDUP_SET, "kafka/sub/p0", 7)
    b.op(Op.DEDUP_SET, "kafka/sub/p1", 0)
    stores = [PostgresStorage(cluster.create_database("dedup"), pool_size=1), SqliteStorage(tmp_path / "d")]

    async def go() -> None:
        for store in stores:
            await _replay(store, [b])
            try:
                assert store.get_dedup("kafka/sub/p0") == 7
                assert store.get_dedup("kafka/sub/p1") == 0
                assert store.get_dedup("kafka/sub/p2") is None
            finally:
                await store.close()

    asyncio.run(go())


def test_schema_is_built_from_empty_by_numbered_migrations_and_reopening_applies_none_again(
    cluster: PostgresCluster,
) -> None:
    dsn = cluster.create_database("migrate")

    async def open_close() -> None:
        store = PostgresStorage(dsn, pool_size=1, lease_ttl_s=LONG_TTL_S)
        await store.open()
        await store.close()

    asyncio.run(open_close())
    asyncio.run(open_close())
    with psycopg.connect(dsn) as conn:
        applied = conn.execute("SELECT version, name FROM schema_migration ORDER BY version").fetchall()
        leases = conn.execute("SELECT count(*), min(epoch), max(epoch) FROM partition_lease").fetchone()
    assert applied == [(m.version, m.name) for m in migrations()]
    assert leases == (64, 2, 2)  # two opens: each took every partition with a new epoch


def test_a_stale_node_is_fenced_off_and_its_batch_changes_nothing(cluster: PostgresCluster) -> None:
    dsn = cluster.create_database("fence")
    raw = bytes(range(24))

    def batch(value: bytes) -> WriteBatch:
        b = WriteBatch()
        b.op(Op.STATE_SET, "Counter", "k", b"v", value)
        b.journal.append((raw, 0, 1024, value, 1))
        return b

    async def go() -> None:
        old = PostgresStorage(dsn, pool_size=1, node_name="old", lease_ttl_s=LONG_TTL_S)
        new = PostgresStorage(dsn, pool_size=1, node_name="new", lease_ttl_s=LONG_TTL_S)
        try:
            await old.open()
            await old.commit_batch(batch(b"old-1"))
            await new.open()  # takes every partition: a new epoch
            with pytest.raises(FencedError):
                await old.commit_batch(batch(b"old-2"))
            assert new.get_state("Counter", "k") == {b"v": b"old-1"}
            assert [e.body for e in new.get_journal(raw)] == [b"old-1"]
        finally:
            await old.close()
            await new.close()

    asyncio.run(go())


def _db_lease_state(dsn: str) -> tuple[bool, bool]:
    """(every lease expired, none expired) on the database clock."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute(
            "SELECT bool_and(expires_at < now()), bool_and(expires_at > now()) FROM partition_lease"
        ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1])


async def _until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"still not {what} after {DEADLINE_S} s"
        await asyncio.sleep(0.1)


def _state_batch(value: bytes) -> WriteBatch:
    b = WriteBatch()
    b.op(Op.STATE_SET, "Counter", "k", b"v", value)
    return b


def test_leases_expire_on_the_database_clock_and_a_node_that_lost_them_drops_its_partitions(
    cluster: PostgresCluster,
) -> None:
    dsn = cluster.create_database("expiry")

    async def go() -> None:
        a = PostgresStorage(dsn, pool_size=1, node_name="a", lease_ttl_s=SHORT_TTL_S)
        b = PostgresStorage(dsn, pool_size=1, node_name="b", lease_ttl_s=LONG_TTL_S)
        try:
            await a.open()
            await a.commit_batch(_state_batch(b"a-1"))
            # a stops renewing (as if paused): its leases run out on the database clock.
            await _until(lambda: _db_lease_state(dsn)[0], "expired")
            with pytest.raises(FencedError):  # past its local deadline: not even sent
                await a.commit_batch(_state_batch(b"a-2"))
            await b.open()  # takes every partition with a new epoch
            lost = await a.renew_leases()
            assert lost == list(range(64)) and a.owned_partitions() == []
            with pytest.raises(FencedError):
                await a.commit_batch(_state_batch(b"a-3"))
            assert b.get_state("Counter", "k") == {b"v": b"a-1"}
            status = await b.cluster_status()
            assert status["nodes"] == [{"name": "b", "partitions": 64}]
            assert {p["owner"] for p in status["partitions"]} == {"b"}
            assert all(p["epoch"] == 2 for p in status["partitions"])
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())


def test_a_node_that_renews_keeps_its_leases_past_their_first_expiry(cluster: PostgresCluster) -> None:
    dsn = cluster.create_database("renew")

    async def go() -> None:
        a = PostgresStorage(dsn, pool_size=2, node_name="a", lease_ttl_s=SHORT_TTL_S)
        await a.open()
        with psycopg.connect(dsn) as conn:
            first = conn.execute("SELECT max(expires_at) FROM partition_lease").fetchone()
        try:
            async with asyncio.TaskGroup() as tg:
                renewing = tg.create_task(a.keep_leases(0.5))

                def past_first_expiry() -> bool:
                    with psycopg.connect(dsn) as conn:
                        row = conn.execute("SELECT now() > %s", first).fetchone()
                    return bool(row and row[0])

                await _until(past_first_expiry, "past the first expiry")
                await a.commit_batch(_state_batch(b"still mine"))
                assert _db_lease_state(dsn) == (False, True)
                renewing.cancel()
            assert a.get_state("Counter", "k") == {b"v": b"still mine"}
            assert a.owned_partitions() == list(range(64))
        finally:
            await a.close()

    asyncio.run(go())


@pytest.mark.parametrize(
    "url, message",
    [
        ("mysql://u@h/db", "must be a postgresql://"),
        ("postgresql://u@h:5432", "needs a database name"),
        ("postgresql:///db", "needs a host"),
    ],
)
def test_bad_store_urls_are_refused_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_store_url(url)


def test_sqlite_stays_the_default(tmp_path: Path) -> None:
    assert isinstance(make_storage(Settings(data_dir=tmp_path)), SqliteStorage)


def test_perdure_server_refuses_a_bad_store_url_with_exit_code_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(perdure_executable()), "server", "--data-dir", str(tmp_path), "--store", "mysql://u@h/db"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "--store must be a postgresql://USER@HOST:PORT/DB URL" in proc.stderr


def test_a_store_url_with_several_hosts_is_accepted_and_logged_without_the_user() -> None:
    url = "postgresql://perdure:secret@db1:5432,db2:5433/perdure?target_session_attrs=read-write"
    check_store_url(url)
    settings = Settings(store=url)
    assert describe_store(settings) == "store postgresql://db1:5432,db2:5433/perdure"
