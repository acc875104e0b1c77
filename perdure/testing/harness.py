"""The test harness: a whole Perdure server in-process, on a temporary SQLite store, with a clock
the test moves forward and service apps served without ports.

    async with Harness(app) as h:                       # official SDK or Perdure's SDK app
        inv = await h.send("Signup/alice/run", {"email": "a@x"})
        await h.advance(timedelta(days=30))            # every timer due by then fires
        assert await h.attach(inv) == "done"

The clock is the wall clock plus an offset that `advance` grows, so durations the SDKs compute
from their own clock (a `ctx.sleep` wakes at SDK time + duration) fall due when the harness
clock passes them. Everything else is the real server: the processor, SQLite, the invoker,
the ingress (reached through httpx's in-process ASGI transport) and the SQL views."""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, cast

import httpx
import orjson

from perdure.protocol.ids import InvocationId
from perdure.server.admin.declared_schedules import ScheduleDeclarations, declared_schedules
from perdure.server.admin.discovery_client import discover
from perdure.server.ingress.app import Ingress
from perdure.server.invoker.invoker import Invoker
from perdure.server.processor.model import COMPLETED
from perdure.server.processor.processor import Processor
from perdure.server.query.catalog import registry_catalog
from perdure.server.query.encode import to_json
from perdure.server.query.engine import QueryEngine
from perdure.server.query.live import live_attempts_of
from perdure.server.registry import Registry
from perdure.server.runtime import Runtime
from perdure.server.storage.sqlite import SqliteStorage
from perdure.testing.asgi_endpoint import ASGIApp, AsgiEndpoints

MESSAGE_SIZE_MAX = 32 * 1024 * 1024
REQUEST_SIZE_MAX = 32 * 1024 * 1024
SETTLE_TIMEOUT_S = 30.0  # how long `advance` and `wait_for_status` wait for the server to catch up
POLL_S = 0.005


class HarnessError(Exception):
    """A call answered an error: `status` and Restate's error `message`."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


class Clock:
    """Wall-clock milliseconds plus an offset the test moves forward (never back)."""

    def __init__(self) -> None:
        self.offset_ms = 0

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.offset_ms

    def advance(self, by: timedelta) -> None:
        ms = int(by.total_seconds() * 1000)
        if ms < 0:
            raise ValueError("the clock only moves forward")
        self.offset_ms += ms


class Harness:
    """Perdure in-process. Use as an async context manager; `apps` are ASGI service apps."""

    def __init__(self, *apps: ASGIApp, data_dir: Path | None = None) -> None:
        self._apps = apps
        self._data_dir = data_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.clock = Clock()
        self._stack = contextlib.AsyncExitStack()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Harness:
        if self._data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="perdure-harness-")
            self._data_dir = Path(self._tmp.name)
        self.storage = SqliteStorage(self._data_dir)
        await self.storage.open()
        self.registry = await Registry.load(self.storage)
        self.endpoints = AsgiEndpoints(clock_offset_ms=lambda: self.clock.offset_ms)
        box: list[Runtime] = []
        self.invoker = Invoker(
            self.registry,
            self.endpoints,
            lambda cmd: box[0].submit(cmd),
            message_size_max=MESSAGE_SIZE_MAX,
            h1_opener=self.endpoints,
        )
        storage, registry = self.storage, self.registry
        self.runtime = Runtime(
            storage, lambda: Processor(storage, registry), self.invoker, clock_ms=self.clock.now_ms
        )
        box.append(self.runtime)
        self._query = QueryEngine(
            storage.path, live_attempts=live_attempts_of(self.runtime), catalog=registry_catalog(registry)
        )
        await self._query.open()
        ingress = Ingress(registry, self.runtime, request_size_max=REQUEST_SIZE_MAX)
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=cast(Any, ingress)),
            base_url="http://ingress.asgi",
            timeout=None,
        )
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self.invoker.bind(self._tg)
        self.endpoints.bind(self._tg)
        await self.runtime.recover()
        self._tasks = [
            self._tg.create_task(self.runtime.run()),
            self._tg.create_task(self.runtime.timers.run()),
            self._tg.create_task(self.invoker.run()),
        ]
        for i, app in enumerate(self._apps):
            await self.register(app, name=f"app{i}")
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.invoker.abort_all()
        for task in self._tasks:
            task.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            await self.http.aclose()
            await self._query.close()
            await self.storage.close()
            if self._tmp is not None:
                self._tmp.cleanup()

    async def register(self, app: ASGIApp, *, name: str) -> str:
        """Serve `app` in-process and register it as a deployment; returns the deployment id."""
        uri = self.endpoints.add(name, app)
        manifest, sdk = await discover(cast(Any, self.endpoints), uri, {})
        declared = declared_schedules(manifest.services)
        result = await self.registry.register(uri, manifest, sdk_version=sdk, force=True)
        await ScheduleDeclarations(self.runtime).apply(declared)
        return result.deployment.id

    # ------------------------------------------------------------------ time

    @property
    def now(self) -> datetime:
        """The harness clock."""
        return datetime.fromtimestamp(self.clock.now_ms() / 1000, tz=UTC)

    async def advance(self, by: timedelta) -> None:
        """Move the clock forward by `by` and wait until every timer due by then has fired."""
        self.clock.advance(by)
        self.runtime.timers.clock_moved()
        await self._until(lambda: not self.runtime.timers.due(self.clock.now_ms()) and self.runtime.idle())

    async def _until(self, done: Callable[[], bool], timeout_s: float = SETTLE_TIMEOUT_S) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                await asyncio.sleep(POLL_S)

    # ------------------------------------------------------------------ invoking

    async def call(self, target: str, body: Any = None, *, idempotency_key: str | None = None) -> Any:
        """Call `Service/handler` or `Object/key/handler` and return its JSON result."""
        resp = await self.http.post(f"/{target}", **_request(body, idempotency_key))
        return _result(resp)

    async def send(
        self,
        target: str,
        body: Any = None,
        *,
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> str:
        """A one-way send (optionally delayed, on the harness clock); returns the invocation id."""
        params = {"delay": f"{int(delay.total_seconds() * 1000)}ms"} if delay is not None else None
        resp = await self.http.post(f"/{target}/send", params=params, **_request(body, idempotency_key))
        answer = _result(resp)
        invocation_id: str = answer["invocationId"]
        return invocation_id

    async def attach(self, invocation_id: str) -> Any:
        """Wait for the invocation to complete and return its JSON result."""
        return _result(await self.http.get(f"/restate/invocation/{invocation_id}/attach"))

    async def resolve_awakeable(self, awakeable_id: str, value: Any = None) -> None:
        resp = await self.http.post(f"/restate/awakeables/{awakeable_id}/resolve", **_request(value, None))
        _result(resp)

    async def reject_awakeable(self, awakeable_id: str, reason: str) -> None:
        resp = await self.http.post(
            f"/restate/awakeables/{awakeable_id}/reject",
            content=reason.encode(),
            headers={"content-type": "text/plain"},
        )
        _result(resp)

    # ------------------------------------------------------------------ schedules

    async def schedule(self, name: str, **spec: Any) -> Any:
        """Create or replace a schedule (the fields of `PUT /schedules/{name}`: target, body, cron or
        every, timezone, overlap, catch_up_max, paused); ticks follow the harness clock."""
        from perdure.server.admin.schedules import parse_schedule

        schedule = parse_schedule(name, spec, self.registry)
        return await self._schedule_command("put", name, schedule)

    async def pause_schedule(self, name: str) -> Any:
        return await self._schedule_command("pause", name)

    async def resume_schedule(self, name: str) -> Any:
        return await self._schedule_command("resume", name)

    async def _schedule_command(self, action: str, name: str, schedule: Any = None) -> Any:
        from perdure.server.processor.commands import ChangeSchedule

        reply = await self.runtime.call(lambda token: ChangeSchedule(action, name, schedule, token))
        if reply.kind == "error":
            raise HarnessError(reply.code, reply.message)
        return reply.data

    # ------------------------------------------------------------------ looking inside

    def state(self, service: str, key: str) -> dict[str, Any]:
        """The committed K/V state of an object or workflow key, values decoded as JSON."""
        raw = self.storage.get_state(service, key)
        return {k.decode(): _json_or_bytes(v) for k, v in raw.items()}

    async def sql(self, query: str) -> list[dict[str, Any]]:
        """Rows of an introspection query (Restate's tables: sys_invocation, sys_journal, state...),
        as the admin API answers them in JSON (NULL columns left out of each row)."""
        rows: list[dict[str, Any]] = orjson.loads(to_json(await self._query.execute(query)))["rows"]
        return rows

    async def journal(self, invocation_id: str) -> list[dict[str, Any]]:
        """The invocation's journal: index, entry_type, name, completed, entry_json."""
        InvocationId.parse(invocation_id)  # refuse what is not an id before it reaches SQL
        return await self.sql(
            "SELECT index, entry_type, name, completed, entry_json FROM sys_journal "
            f"WHERE id = '{invocation_id}' ORDER BY index"
        )

    async def status(self, invocation_id: str) -> str | None:
        rows = await self.sql(
            f"SELECT status FROM sys_invocation WHERE id = '{InvocationId.parse(invocation_id)}'"
        )
        return str(rows[0]["status"]) if rows else None

    async def wait_for_status(self, invocation_id: str, status: str) -> None:
        """Poll until the invocation has `status` (e.g. "suspended" before an `advance`)."""
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while await self.status(invocation_id) != status:
                await asyncio.sleep(POLL_S * 4)

    async def wait_for_entry(self, invocation_id: str, entry_type: str) -> None:
        """Poll until the journal has an entry of `entry_type` (e.g. "Command: Sleep": the
        sleep's wake-up time is fixed, so an `advance` past it wakes it)."""
        async with asyncio.timeout(SETTLE_TIMEOUT_S):
            while not any(r["entry_type"] == entry_type for r in await self.journal(invocation_id)):
                await asyncio.sleep(POLL_S * 4)

    def completed(self, invocation_id: str) -> bool:
        inv = self.storage.get_invocation(InvocationId.parse(invocation_id).raw)
        return inv is not None and inv.status == COMPLETED


def _request(body: Any, idempotency_key: str | None) -> dict[str, Any]:
    headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
    if body is None:
        return {"headers": headers}
    return {"content": json.dumps(body).encode(), "headers": {**headers, "content-type": "application/json"}}


def _result(resp: httpx.Response) -> Any:
    if resp.status_code >= 300:
        try:
            message = str(resp.json().get("message", resp.text))
        except ValueError:
            message = resp.text
        raise HarnessError(resp.status_code, message)
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.content


def _json_or_bytes(value: bytes) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def harness_fixture(*apps: ASGIApp) -> Any:
    """A pytest fixture (async, needs pytest-asyncio) yielding a started `Harness` over `apps`:
    `harness = harness_fixture(app)` in a test module or conftest.py."""
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def harness() -> AsyncIterator[Harness]:
        async with Harness(*apps) as h:
            yield h

    return harness
