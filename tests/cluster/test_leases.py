"""Two cluster nodes' stores on one database, in process (the deterministic variant of the
SIGSTOP test): leases are taken only when free or expired, each take raises the epoch, the old
holder's next batch passes its local deadline yet the fence in the database rejects it and
writes nothing, its renewal reports the loss, and a released lease is free at once."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from perdure.server.processor.batch import WriteBatch
from perdure.server.storage.postgres import FencedError, PostgresStorage
from tests.support.postgres import shared_cluster

LONG_TTL_S = 3600.0
P = 5
RAW = (P << 58).to_bytes(8, "big") + bytes(range(16))  # an invocation id in partition P


def _journal_batch(idx: int, body: bytes) -> WriteBatch:
    b = WriteBatch()
    b.journal.append((RAW, idx, 1024, body, 1))
    return b


def test_a_taken_lease_fences_the_old_holder_in_the_database() -> None:
    dsn = shared_cluster().create_database("leases")

    async def go() -> None:
        a = PostgresStorage(dsn, pool_size=1, node_name="a", lease_ttl_s=LONG_TTL_S, cluster=True)
        b = PostgresStorage(dsn, pool_size=1, node_name="b", lease_ttl_s=LONG_TTL_S, cluster=True)
        await a.open()
        await b.open()
        try:
            assert a.owned_partitions() == [] and b.owned_partitions() == []
            assert await a.acquire([P, P + 1]) == [P, P + 1]
            assert await b.acquire([P]) == []  # held and unexpired
            await a.commit_batch(_journal_batch(0, b"a-0"))
            with psycopg.connect(dsn, autocommit=True) as conn:  # a pauses past its lease
                conn.execute("UPDATE partition_lease SET expires_at = now() WHERE partition = %s", (P,))
            assert await b.acquire([P]) == [P]
            assert b.epoch_of(P) == a.epoch_of(P) + 1
            with pytest.raises(FencedError):  # a's local deadline (an hour) has not run out
                await a.commit_batch(_journal_batch(1, b"a-1"))
            await b.commit_batch(_journal_batch(1, b"b-1"))
            assert [e.body for e in b.get_journal(RAW)] == [b"a-0", b"b-1"]
            assert await a.renew_leases() == [P]  # the loss shows at the next renewal
            assert a.owned_partitions() == [P + 1]
            # drain then release: a stops writing first, then the lease is free at once
            dropped = a.relinquish([P + 1])
            with pytest.raises(FencedError):
                other = WriteBatch()
                other.journal.append((((P + 1) << 58).to_bytes(8, "big") + bytes(16), 0, 1024, b"x", 1))
                await a.commit_batch(other)
            await a.release(dropped)
            assert await b.acquire([P + 1]) == [P + 1]
            assert await b.renew_leases() == []  # (which also heartbeats b's node row)
            status = await b.cluster_status()
            assert {n["name"] for n in status["nodes"] if n["live"]} == {"a", "b"}
            assert status["owned_here"] == [P, P + 1]
        finally:
            await a.close()
            await b.close()

    asyncio.run(go())
