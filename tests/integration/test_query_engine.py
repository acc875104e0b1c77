"""The query engine over a store filled by the real processor (no network): invocations are driven
with the commands the ingress and the invoker would submit, every batch is
committed to a real store, and the query engine reads it: every test runs on
SQLite and on PostgreSQL (a fresh database of the tests' private cluster)."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import AsyncIterator, Collection
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pytest
from google.protobuf.message import Message

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import message_type
from perdure.protocol.ids import InvocationId
from perdure.server.processor.commands import AttemptFailed, Command, Invoke, InvokeRequest, SdkMessage
from perdure.server.processor.effects import Effect, Reply, StartAttempt
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor
from perdure.server.query.catalog import Catalog, DeploymentRow, ServiceRow
from perdure.server.query.encode import to_arrow, to_json
from perdure.server.query.engine import QueryEngine, QueryError, QueryLimits, SqlEngine
from perdure.server.query.functions import invocation_id_text, timestamp_text
from perdure.server.query.pg_engine import PgQueryEngine
from perdure.server.query.tables import TABLES
from perdure.server.storage.postgres import PostgresStorage
from perdure.server.storage.sqlite import SqliteStorage
from tests.support.postgres import postgres_available, shared_cluster
from tests.unit.schema_fixture import SCHEMA

NOW_MS = 1_795_000_000_000
DEPLOYMENT = "dp_1test"

GREETER = Target("Greeter", "greet", None, "service", None)


def counter(key: str, handler: str = "add") -> Target:
    return Target("Counter", handler, key, "virtual_object", "exclusive" if handler == "add" else "shared")


CATALOG = Catalog(
    deployments=(
        DeploymentRow(
            DEPLOYMENT, "http://127.0.0.1:9080/", NOW_MS - 1000, 5, 6, ("Greeter", "Counter", "Flow")
        ),
    ),
    services=(
        ServiceRow("Greeter", 1, "service", DEPLOYMENT),
        ServiceRow("Counter", 1, "virtual_object", DEPLOYMENT),
        ServiceRow("Flow", 1, "workflow", DEPLOYMENT),
    ),
)


class World:
    """The processor and its SQLite store, stepped by hand with a fake clock."""

    def __init__(self, storage: SqliteStorage | PostgresStorage) -> None:
        self.storage = storage
        self.processor = Processor(self.storage, SCHEMA)
        self.now_ms = NOW_MS
        self._tokens = itertools.count(1)
        self.attempts: dict[str, int] = {}  # invocation id -> live attempt number

    async def open(self) -> None:
        await self.storage.open()
        self.processor.recover(self.storage, self.now_ms)
        await self._commit()

    async def close(self) -> None:
        await self.storage.close()

    def live(self) -> Collection[bytes]:
        return {raw for raw, inv in self.processor.resident().items() if inv.attempt_live}

    async def apply(self, *cmds: Command, advance_ms: int = 1) -> list[Effect]:
        self.now_ms += advance_ms
        for cmd in cmds:
            self.processor.apply(cmd, self.now_ms)
        return await self._commit()

    async def _commit(self) -> list[Effect]:
        batch, effects = self.processor.take()
        if batch:
            await self.storage.commit_batch(batch)
        self.processor.committed()
        for e in effects:
            if isinstance(e, StartAttempt):
                self.attempts[e.invocation_id] = e.attempt
        return effects

    async def send(self, target: Target, body: Any, trace_parent: str | None = None) -> str:
        """Invoke with `/send`: returns the new invocation id."""
        request = InvokeRequest(
            target,
            orjson.dumps(body),
            headers=(("content-type", "application/json"),),
            trace_parent=trace_parent,
        )
        effects = await self.apply(Invoke(request, next(self._tokens), "send"))
        replies = [e for e in effects if isinstance(e, Reply)]
        assert replies and replies[0].invocation_id is not None
        return replies[0].invocation_id

    async def sdk(self, invocation_id: str, msg: Message, msg_type: int | None = None) -> None:
        """One protocol message from the service's live attempt."""
        raw = InvocationId.parse(invocation_id).raw
        if msg_type is None:
            msg_type = message_type(msg)
        await self.apply(SdkMessage(raw, self.attempts[invocation_id], msg_type, msg.SerializeToString()))

    async def run(self, invocation_id: str, name: str, completion_id: int, value: bytes) -> None:
        await self.sdk(invocation_id, pb.RunCommandMessage(result_completion_id=completion_id, name=name))
        await self.sdk(
            invocation_id, pb.ProposeRunCompletionMessage(result_completion_id=completion_id, value=value)
        )

    async def finish(self, invocation_id: str, value: bytes) -> None:
        await self.sdk(invocation_id, pb.OutputCommandMessage(value=pb.Value(content=value)))
        await self.sdk(invocation_id, pb.EndMessage())

    async def fail_attempt(self, invocation_id: str, message: str, command: tuple[int, str, int]) -> None:
        raw = InvocationId.parse(invocation_id).raw
        index, name, ty = command
        await self.apply(
            AttemptFailed(
                raw,
                self.attempts[invocation_id],
                500,
                message,
                "Traceback (most recent call last):\n  boom\n",
                related_command_index=index,
                related_command_name=name,
                related_command_type=ty,
            )
        )


# ---------------------------------------------------------------------- tests


STORES = ["sqlite", "postgres"] if postgres_available() else ["sqlite"]


@pytest.fixture(params=STORES)
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    if request.param == "postgres":
        w = World(PostgresStorage(shared_cluster().create_database("query"), pool_size=1, lease_ttl_s=3600))
    else:
        w = World(SqliteStorage(tmp_path / "data"))
    await w.open()
    yield w
    await w.close()


def make_engine(world: World, limits: QueryLimits | None = None) -> QueryEngine | PgQueryEngine:
    """The engine of the world's store (SQLite or PostgreSQL), seeing its live attempts and CATALOG."""
    if isinstance(world.storage, PostgresStorage):
        return PgQueryEngine(
            world.storage.dsn, live_attempts=world.live, catalog=lambda: CATALOG, limits=limits
        )
    return QueryEngine(world.storage.path, live_attempts=world.live, catalog=lambda: CATALOG, limits=limits)


@pytest.fixture
async def engine(world: World) -> AsyncIterator[QueryEngine | PgQueryEngine]:
    eng = make_engine(world)
    await eng.open()
    yield eng
    await eng.close()


async def rows(engine: SqlEngine, sql: str) -> list[dict[str, Any]]:
    result = await engine.execute(sql)
    decoded = orjson.loads(to_json(result))["rows"]
    assert isinstance(decoded, list)
    return decoded


async def test_sleeping_invocation_shows_its_journal_entries(world: World, engine: SqlEngine) -> None:
    inv = await world.send(GREETER, "Ann")
    await world.run(inv, "one", 1, b'"x"')
    wake_ms = world.now_ms + 600_000
    await world.sdk(inv, pb.SleepCommandMessage(wake_up_time=wake_ms, result_completion_id=2))

    got = await rows(
        engine, f"SELECT index, entry_type, name FROM sys_journal WHERE id = '{inv}' ORDER BY index"
    )
    assert got == [
        {"index": 0, "entry_type": "Command: Input", "name": ""},
        {"index": 1, "entry_type": "Command: Run", "name": "one"},
        {"index": 2, "entry_type": "Notification: Run"},
        {"index": 3, "entry_type": "Command: Sleep", "name": ""},
    ]
    sleep = await rows(
        engine, f"SELECT completed, sleep_wakeup_at FROM sys_journal WHERE id = '{inv}' AND index = 3"
    )
    assert sleep == [{"completed": False, "sleep_wakeup_at": timestamp_text(wake_ms)}]
    run = await rows(engine, f"SELECT completed FROM sys_journal WHERE id = '{inv}' AND index = 1")
    assert run == [{"completed": True}]
    status = await rows(
        engine, f"SELECT status, journal_size, journal_commands_size FROM sys_invocation WHERE id = '{inv}'"
    )
    assert status == [{"status": "running", "journal_size": 4, "journal_commands_size": 3}]


async def test_suspended_invocation_shows_what_it_waits_for(world: World, engine: SqlEngine) -> None:
    inv = await world.send(GREETER, "Eve")
    await world.sdk(inv, pb.SleepCommandMessage(wake_up_time=world.now_ms + 60_000, result_completion_id=1))
    await world.sdk(inv, pb.SuspensionMessage(waiting_completions=[1]))
    sql = f"SELECT status, suspended_waiting_for_completions FROM sys_invocation WHERE id = '{inv}'"
    assert await rows(engine, sql) == [{"status": "suspended", "suspended_waiting_for_completions": [1]}]
    table = pa.ipc.open_stream(to_arrow(await engine.execute(sql))).read_all()
    assert table.schema.field("suspended_waiting_for_completions").type == pa.list_(pa.uint32())
    assert await rows(engine, f"SELECT id FROM sys_invocation_state WHERE id = '{inv}'") == []


async def test_failed_attempt_shows_backing_off_with_last_failure(world: World, engine: SqlEngine) -> None:
    inv = await world.send(GREETER, "Bob")
    await world.sdk(inv, pb.RunCommandMessage(result_completion_id=1, name="flaky"))
    await world.fail_attempt(inv, "RuntimeError('transient failure 1')", (1, "flaky", T.RUN))

    got = await rows(
        engine,
        "SELECT status, retry_count, last_failure, next_retry_at, last_failure_related_command_index, "
        "last_failure_related_command_name, last_failure_related_command_type "
        f"FROM sys_invocation WHERE id = '{inv}'",
    )
    assert got == [
        {
            "status": "backing-off",
            "retry_count": 1,
            "last_failure": "[500 Internal] RuntimeError('transient failure 1')\n"
            "Traceback (most recent call last):\n  boom\n",
            "next_retry_at": timestamp_text(world.now_ms + 500),
            "last_failure_related_command_index": 1,
            "last_failure_related_command_name": "flaky",
            "last_failure_related_command_type": "Run",
        }
    ]
    state = await rows(engine, f"SELECT in_flight FROM sys_invocation_state WHERE id = '{inv}'")
    assert state == [{"in_flight": False}]


async def test_completed_invocation_and_object_state(world: World, engine: SqlEngine) -> None:
    inv = await world.send(counter("c1"), 5)
    await world.sdk(inv, pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=b"5")))
    await world.finish(inv, b"5")

    got = await rows(
        engine,
        f"SELECT target, status, completion_result, completed_at FROM sys_invocation WHERE id = '{inv}'",
    )
    assert got == [
        {
            "target": "Counter/c1/add",
            "status": "completed",
            "completion_result": "success",
            "completed_at": timestamp_text(world.now_ms),
        }
    ]
    state = await rows(engine, "SELECT service_name, service_key, key, value_utf8, value FROM state")
    assert state == [
        {"service_name": "Counter", "service_key": "c1", "key": "count", "value_utf8": "5", "value": "35"}
    ]


async def test_queued_call_is_pending_behind_the_lock_holder(world: World, engine: SqlEngine) -> None:
    first = await world.send(counter("k9"), 1)
    second = await world.send(counter("k9"), 2)
    got = await rows(engine, "SELECT id, status FROM sys_invocation ORDER BY created_at, status")
    assert {r["id"]: r["status"] for r in got} == {first: "running", second: "pending"}
    lock = await rows(engine, "SELECT service_name, service_key, invocation_id FROM sys_keyed_service_status")
    assert lock == [{"service_name": "Counter", "service_key": "k9", "invocation_id": first}]
    inbox = await rows(engine, "SELECT service_key, id FROM sys_inbox")
    assert inbox == [{"service_key": "k9", "id": second}]


async def test_cli_invocation_queries_run_unchanged(world: World, engine: SqlEngine) -> None:
    inv = await world.send(GREETER, "Cy")
    listing = await rows(engine, CLI_LIST_QUERY.replace("<ids>", f"'{inv}'"))
    assert listing[0]["id"] == inv and listing[0]["pinned_deployment_exists"] is True
    assert listing[0]["num_retries"] == 1 and listing[0]["target"] == "Greeter/greet"
    count = await engine.execute(CLI_COUNT_QUERY)
    assert count.rows == [(1,)]
    filtered = await engine.execute(CLI_COUNT_QUERY + " AND inv.target_service_name = 'Greeter'")
    assert filtered.rows == [(1,)]
    journal = await rows(engine, CLI_JOURNAL_QUERY.replace("<id>", inv))
    assert [r["entry_type"] for r in journal] == ["Command: Input"]
    probe = await engine.execute(
        "SELECT COUNT(*) FROM information_schema.columns WHERE table_name = 'sys_journal' "
        "AND column_name IN ('version', 'entry_json', 'appended_at')"
    )
    assert probe.rows == [(3,)]


async def test_cli_services_status_queries_run_unchanged(world: World, engine: SqlEngine) -> None:
    # `restate services status`: FIRST_VALUE aggregates, and SUM(retry_count) is an integer
    # (PostgreSQL sums bigints to numeric: it must come back as a plain number).
    holder = await world.send(counter("s1"), 1)
    queued = await world.send(counter("s1"), 2)
    await world.fail_attempt(holder, "RuntimeError('x')", (0, "", T.INPUT))
    locked = await rows(engine, CLI_LOCKED_KEYS_QUERY)
    assert [{k: r.get(k) for k in _LOCK_KEYS} for r in locked] == [
        {
            "service_name": "Counter",
            "service_key": "s1",
            "invocation_status": "backing-off",
            "invocation_holding_lock": holder,
            "invocation_method_holding_lock": "add",
            "num_pending": 0,
            "num_retries": 1,
        }
    ]
    pending = await rows(engine, CLI_PENDING_QUERY)
    assert [(r["target_handler_name"], r["num_invocations"], r["oldest_invocation"]) for r in pending] == [
        ("add", 1, queued)
    ]
    table = pa.ipc.open_stream(to_arrow(await engine.execute(CLI_LOCKED_KEYS_QUERY))).read_all()
    assert table.column("num_retries").to_pylist() == [1]


async def test_trace_id_is_the_stored_traceparents(world: World, engine: SqlEngine) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = await world.send(GREETER, "Tia", trace_parent=traceparent)
    plain = await world.send(GREETER, "Pat")
    got = await rows(engine, "SELECT id, trace_id FROM sys_invocation ORDER BY trace_id NULLS LAST")
    assert got == [{"id": traced, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}, {"id": plain}]


# Tables the PostgreSQL store does not serve yet (empty views there): limits, schedules and
# Kafka lag are SQLite-only for now.
PG_TABLES_NOT_BUILT = {"sys_user_limits", "perdure_limits", "perdure_schedules", "perdure_subscription_lag"}


def test_every_column_sqlite_fills_postgresql_fills_too() -> None:
    # A PostgreSQL view leaves a column without an expression NULL: a column added to the SQLite
    # views alone (trace_id once) would silently read NULL on PostgreSQL.
    from perdure.server.query import pg_views, views

    missing = {
        table: sorted(set(exprs) - set(pg_views.SOURCES[table][0]))
        for table, (exprs, _) in views.SOURCES.items()
        if table not in PG_TABLES_NOT_BUILT
    }
    assert {t: cols for t, cols in missing.items() if cols} == {}
    assert PG_TABLES_NOT_BUILT.isdisjoint(pg_views.SOURCES), "built now: drop it from PG_TABLES_NOT_BUILT"


async def test_registry_tables_come_from_the_catalog(engine: SqlEngine) -> None:
    services = await rows(engine, "SELECT name, ty, public FROM sys_service ORDER BY name")
    assert services[0] == {"name": "Counter", "ty": "virtual_object", "public": True}
    deployments = await rows(engine, "SELECT id, services, created_at FROM sys_deployment")
    assert deployments == [
        {
            "id": DEPLOYMENT,
            "services": ["Greeter", "Counter", "Flow"],
            "created_at": timestamp_text(NOW_MS - 1000),
        }
    ]


async def test_arrow_stream_has_restate_column_types(world: World, engine: SqlEngine) -> None:
    inv = await world.send(GREETER, "Di")
    table = pa.ipc.open_stream(to_arrow(await engine.execute("SELECT * FROM sys_invocation"))).read_all()
    assert table.schema.field("created_at").type == pa.timestamp("ms", tz="+00:00")
    assert table.schema.field("journal_retention").type == pa.duration("ms")
    assert table.schema.field("retry_count").type == pa.uint64()
    assert table.column("id").to_pylist() == [inv]
    journal = pa.ipc.open_stream(to_arrow(await engine.execute("SELECT * FROM sys_journal"))).read_all()
    assert journal.schema.field("completed").type == pa.bool_()
    assert journal.schema.field("raw").type == pa.large_binary()
    assert journal.schema.field("partition_key").type == pa.uint64()
    assert journal.column("partition_key").to_pylist() == [InvocationId.parse(inv).partition_key]


async def test_every_table_has_restate_columns(engine: SqlEngine) -> None:
    for table, columns in TABLES.items():
        result = await engine.execute(f"SELECT * FROM {table} LIMIT 0")
        assert result.columns == [name for name, _ in columns], table


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT nope FROM state", "nope"),
        ("SELEC x", "syntax error"),
        ("DELETE FROM invocation", "only read-only queries"),
        ("CREATE TEMP TABLE t (x integer)", "only read-only queries"),
        ("SELECT 1; SELECT 2", "one SQL statement"),
    ],
)
async def test_bad_sql_is_a_query_error(engine: SqlEngine, sql: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        await engine.execute(sql)


async def test_heavy_query_is_stopped_by_its_time_limit(world: World) -> None:
    eng = make_engine(world, QueryLimits(time_limit_s=0.3))
    await eng.open()
    try:
        started = time.monotonic()
        with pytest.raises(QueryError, match=r"time limit of 0\.3 s"):
            await eng.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) "
                "SELECT count(*) FROM n a, n b"
            )
        assert time.monotonic() - started < 2.0
        assert (await eng.execute("SELECT 1")).rows == [(1,)]
    finally:
        await eng.close()


async def test_row_limit_is_a_clear_error(world: World) -> None:
    eng = make_engine(world, QueryLimits(rows_max=10))
    await eng.open()
    try:
        with pytest.raises(QueryError, match="more than 10 rows"):
            await eng.execute(
                "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 11) SELECT x FROM n"
            )
    finally:
        await eng.close()


CLI_COUNT_QUERY = (
    "SELECT COUNT(1) FROM (SELECT * FROM sys_invocation inv LIMIT 50000) WHERE status != 'completed'"
)
CLI_LIST_QUERY = (
    "SELECT inv.id, inv.target, inv.target_service_ty, inv.idempotency_key, inv.status, inv.created_at, "
    "inv.modified_at as state_modified_at, inv.pinned_deployment_id, inv.retry_count as num_retries, "
    "inv.last_failure as last_failure_message, "
    "inv.last_failure_related_entry_index as last_failure_entry_index, "
    "inv.last_failure_related_entry_name as last_failure_entry_name, "
    "inv.last_failure_related_entry_type as last_failure_entry_ty, inv.last_attempt_deployment_id, "
    "inv.last_attempt_server, inv.next_retry_at, inv.last_start_at, inv.invoked_by_id, "
    "inv.invoked_by_target, inv.trace_id, inv.completion_result, inv.completion_failure, "
    "dp.id IS NOT NULL as pinned_deployment_exists "
    "FROM sys_invocation inv LEFT JOIN sys_deployment dp ON dp.id = inv.pinned_deployment_id "
    "WHERE status != 'completed' AND inv.id in (<ids>) ORDER BY inv.created_at DESC, inv.id"
)
_LOCK_KEYS = (
    "service_name",
    "service_key",
    "invocation_status",
    "invocation_holding_lock",
    "invocation_method_holding_lock",
    "num_pending",
    "num_retries",
)
# The two queries `restate services status` sends (CLI 1.7), as it spells them.
CLI_LOCKED_KEYS_QUERY = """
    SELECT
        target_service_name as service_name,
        target_service_key as service_key,
        status as invocation_status,
        first_value(id) as invocation_holding_lock,
        first_value(target_handler_name) as invocation_method_holding_lock,
        first_value(created_at) as invocation_created_at,
        first_value(modified_at) as modified_at,
        first_value(pinned_deployment_id) as pinned_deployment_id,
        first_value(last_attempt_deployment_id) as last_attempt_deployment_id,
        first_value(last_failure) as last_failure_message,
        first_value(next_retry_at) as next_retry_at,
        first_value(last_start_at) as last_start_at,
        0 as num_pending,
        sum(retry_count) as num_retries
    FROM sys_invocation
    WHERE status != 'pending' AND target_service_name IN ('Counter')
    GROUP BY target_service_name, target_service_key, status
"""
CLI_PENDING_QUERY = """
    SELECT
        target_service_name,
        target_handler_name,
        'pending' as status,
        COUNT(1) as num_invocations,
        MIN(created_at) as oldest_at,
        FIRST_VALUE(id ORDER BY created_at ASC) as oldest_invocation
     FROM sys_invocation_status
     WHERE status == 'inboxed' AND target_service_name IN ('Counter')
     GROUP BY target_service_name, target_handler_name
"""
CLI_JOURNAL_QUERY = (
    "SELECT sj.index, sj.entry_type, sj.completed, sj.invoked_id, sj.invoked_target, sj.sleep_wakeup_at, "
    "sj.name, sj.promise_name, sj.version, sj.entry_json, sj.appended_at FROM sys_journal sj "
    "WHERE sj.id = '<id>' ORDER BY index DESC LIMIT 100"
)


def test_fast_id_rendering_equals_the_protocol_ids() -> None:
    samples = [bytes(24), b"\xff" * 24, *(os.urandom(24) for _ in range(2000))]
    for raw in samples:
        assert invocation_id_text(raw) == str(InvocationId.from_raw(raw))
