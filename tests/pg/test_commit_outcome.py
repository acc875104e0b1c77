"""Unknown commit outcome on the PostgreSQL store, step by step: the connection of a batch in
flight is cut (`pg_terminate_backend`, `pg_cancel_backend` from another connection) at a moment
held open on purpose, and the store must read the batch's fate from its lease row before it
returns anything.

- Committed (cut while the commit waits for the synchronous standby): the store returns success,
  but only once the standby has the batch too (the primary names a standby that does not exist
  while the test cuts the connection, so commits wait).
- Not committed (cut while the batch waits for a row lock): the store reports failure, and the
  lost batch can never commit later (its partition's lease was re-taken with a new epoch)."""

from __future__ import annotations

import asyncio
import time

import psycopg
import pytest

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.storage.interface import StorageError
from perdure.server.storage.pg_batch import COMMIT_SQL, anchor_partition, commit_args
from perdure.server.storage.postgres import FencedError, PostgresStorage
from tests.support.pg_replica import STANDBY_NAME, ReplicatedPostgres
from tests.support.postgres import postgres_available

pytestmark = [
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 is not installed"),
    pytest.mark.timeout(180),
]

LONG_TTL_S = 3600.0
WAIT_S = 60.0
RAW = bytes(range(24))  # one invocation id: its journal and the state of one key


def batch(value: bytes, idx: int) -> WriteBatch:
    b = WriteBatch()
    b.op(Op.STATE_SET, "Counter", "k", b"v", value)
    b.journal.append((RAW, idx, 1024, value, 1))
    return b


def backends(pair: ReplicatedPostgres, like: str, wait_event: str, column: str = "wait_event") -> list[int]:
    """Client backends running `like...` that wait on `wait_event` (or a `wait_event_type`)."""
    out = pair.primary.psql(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' "
        f"AND query LIKE '{like}%' AND {column} = '{wait_event}' ORDER BY pid"
    )
    return [int(p) for p in out.split()]


async def one_backend(pair: ReplicatedPostgres, like: str, wait_event: str) -> int:
    deadline = time.monotonic() + WAIT_S
    while not (found := backends(pair, like, wait_event)):
        assert time.monotonic() < deadline, f"no backend running {like!r} waits on {wait_event}"
        await asyncio.sleep(0.05)
    assert len(found) == 1, found
    return found[0]


def standby_waits_for_nobody(pair: ReplicatedPostgres, wait: bool) -> None:
    """While `wait`, the primary's synchronous standby is one that does not exist."""
    pair.synchronous_standbys("nobody" if wait else STANDBY_NAME)
    deadline = time.monotonic() + WAIT_S
    while (pair.primary.psql("SELECT sync_state FROM pg_stat_replication") == "sync") == wait:
        assert time.monotonic() < deadline, "the primary did not reload synchronous_standby_names"
        time.sleep(0.05)


def on_standby(pair: ReplicatedPostgres, dsn: str, sql: str) -> str:
    return pair.standby.psql(sql, dsn.rsplit("/", 1)[1].split("?")[0])


async def open_store(pair: ReplicatedPostgres, name: str) -> tuple[PostgresStorage, str]:
    dsn = pair.create_database(name)
    store = PostgresStorage(dsn, pool_size=2, node_name="n1", lease_ttl_s=LONG_TTL_S)
    await store.open()
    await store.commit_batch(batch(b"one", 0))
    return store, dsn


@pytest.mark.parametrize("cut", ["pg_terminate_backend", "pg_cancel_backend"])
async def test_a_batch_cut_off_while_waiting_for_the_standby_is_reported_committed_once_replicated(
    pair: ReplicatedPostgres, cut: str
) -> None:
    store, dsn = await open_store(pair, f"outcome_{cut[3:9]}")
    try:
        standby_waits_for_nobody(pair, True)
        commit = asyncio.create_task(store.commit_batch(batch(b"two", 1)))
        pid = await one_backend(pair, "SELECT perdure_commit", "SyncRep")
        pair.primary.psql(f"SELECT {cut}({pid})")
        # The batch is committed on the primary but on no standby: the store must not say so yet.
        # Its reconciliation (an UPDATE of the lease row) waits for the standby as well.
        await one_backend(pair, "UPDATE partition_lease", "SyncRep")
        await asyncio.sleep(0.5)
        assert not commit.done(), "acknowledged a batch no standby has"
        standby_waits_for_nobody(pair, False)
        await asyncio.wait_for(commit, WAIT_S)
        assert store.reconciled == {"committed": 1, "failed": 0}
        # Committed, and on the standby; the store goes on with the same lease.
        bodies = "SELECT string_agg(encode(body, 'escape'), ',' ORDER BY idx) FROM journal"
        assert on_standby(pair, dsn, bodies) == "one,two"
        await store.commit_batch(batch(b"three", 2))
        assert store.get_state("Counter", "k") == {b"v": b"three"}
        assert [e.body for e in store.get_journal(RAW)] == [b"one", b"two", b"three"]
    finally:
        standby_waits_for_nobody(pair, False)
        await store.close()


async def test_a_batch_cut_off_before_it_committed_is_reported_failed_and_can_never_commit(
    pair: ReplicatedPostgres,
) -> None:
    store, dsn = await open_store(pair, "outcome_lost")
    lost = batch(b"lost", 1)
    anchor = anchor_partition(lost, store._bits)
    assert anchor is not None
    old_epochs = [store.epoch_of(p) for p in range(store.partitions)]
    try:
        with psycopg.connect(dsn) as holder:
            # Another transaction holds the lease row: the batch's fence waits for it.
            holder.execute("SELECT 1 FROM partition_lease WHERE partition = %s FOR UPDATE", (anchor,))
            commit = asyncio.create_task(store.commit_batch(lost))
            pid = await one_backend(pair, "SELECT perdure_commit", "transactionid")
            pair.primary.psql(f"SELECT pg_terminate_backend({pid})")
            await one_backend(pair, "UPDATE partition_lease", "transactionid")
            assert not commit.done()
            holder.rollback()
        with pytest.raises(StorageError) as failed:
            await asyncio.wait_for(commit, WAIT_S)
        assert not isinstance(failed.value, FencedError)
        assert store.reconciled == {"committed": 0, "failed": 1}
        assert store.get_state("Counter", "k") == {b"v": b"one"}
        assert [e.body for e in store.get_journal(RAW)] == [b"one"]
        # The lease row was re-taken: the lost statement, were it to arrive now, is fenced off.
        with psycopg.connect(dsn) as conn:
            epoch, last = conn.execute(
                "SELECT epoch, last_batch FROM partition_lease WHERE partition = %s", (anchor,)
            ).fetchone() or (None, None)
        assert epoch == old_epochs[anchor] + 1 and last == -2
        import asyncpg

        replay = await asyncpg.connect(dsn)
        try:
            with pytest.raises(asyncpg.PostgresError, match="no longer"):
                await replay.execute(COMMIT_SQL, "n1", old_epochs, 2, store._bits, *commit_args(lost))
        finally:
            await replay.close()
        # The store itself goes on, under the new epoch.
        await store.commit_batch(batch(b"again", 1))
        assert [e.body for e in store.get_journal(RAW)] == [b"one", b"again"]
        assert store.owned_partitions() == list(range(64))
    finally:
        await store.close()
