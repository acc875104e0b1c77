"""An idempotent call (or a workflow run) whose completed invocation's retention is over gets a new
invocation under the same deterministic id: the old record is purged and the new one created in
one processor step, so the batch that carries the new journal must carry the new record too.
On every store: the memory store of the simulation, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.protocol.ids import InvocationId
from perdure.server.processor.commands import Invoke, InvokeRequest
from perdure.server.processor.effects import Reply
from perdure.server.processor.model import COMPLETED, INVOKED, Target
from perdure.server.processor.processor import Processor
from perdure.server.storage.memory import MemoryStorage
from perdure.server.storage.postgres import PostgresStorage
from perdure.server.storage.sqlite import SqliteStorage
from tests.integration.test_query_engine import GREETER, World
from tests.support.postgres import postgres_available, shared_cluster
from tests.unit.schema_fixture import SCHEMA

RETENTION_MS = 1_000
FLOW = Target("Flow", "run", "w1", "workflow", "workflow")
STORES = ["memory", "sqlite", "postgres"] if postgres_available() else ["memory", "sqlite"]


@pytest.fixture(params=STORES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "postgres":
        storage = PostgresStorage(shared_cluster().create_database("recreate"), pool_size=1, lease_ttl_s=3600)
        w = World(storage)
    elif request.param == "sqlite":
        w = World(SqliteStorage(tmp_path / "data"))
    else:
        w = World(MemoryStorage())  # type: ignore[arg-type]  # the same interface
    await w.open()
    yield w
    await w.close()


def request_for(target: Target, body: bytes) -> InvokeRequest:
    if target.handler_ty == "workflow":
        return InvokeRequest(target, body, workflow_retention_ms=RETENTION_MS)
    return InvokeRequest(target, body, idempotency_key="once", idempotency_retention_ms=RETENTION_MS)


async def send(world: World, target: Target, body: bytes, token: int) -> str:
    effects = await world.apply(Invoke(request_for(target, body), token, "send"))
    (reply,) = [e for e in effects if isinstance(e, Reply)]
    assert reply.kind == "accepted" and reply.invocation_id is not None, reply
    return reply.invocation_id


@pytest.mark.parametrize("target", [GREETER, FLOW], ids=["idempotent", "workflow"])
async def test_a_new_invocation_after_the_retention_is_stored_with_its_journal(
    world: World, target: Target
) -> None:
    first = await send(world, target, b'"one"', 1)
    await world.finish(first, b'"done one"')
    raw = InvocationId.parse(first).raw
    old = world.storage.get_invocation(raw)
    assert old is not None and old.status == COMPLETED

    world.now_ms += 2 * RETENTION_MS  # the first one's retention is over
    again = await send(world, target, b'"two"', 2)  # purge + create in one batch
    assert again == first  # the same deterministic id

    # What was acknowledged is in the store: the new record and its journal, not the old ones.
    stored = world.storage.get_invocation(raw)
    assert stored is not None and stored.status == INVOKED
    journal = world.storage.get_journal(raw)
    assert [e.type for e in journal] == [T.INPUT]
    assert decode(T.INPUT, journal[0].body).value.content == b'"two"'
    # A restarted processor finds it running (recovery reads the record and its journal).
    recovered = Processor(world.storage, SCHEMA)
    running = {inv.id.raw: inv for inv in world.storage.load_running()}
    assert raw in running and len(running[raw].journal) == 1
    recovered.recover(world.storage, world.now_ms)

    await world.finish(again, b'"done two"')
    done = world.storage.get_invocation(raw)
    assert done is not None and done.status == COMPLETED
    assert done.outcome is not None and done.outcome.value == b'"done two"'
