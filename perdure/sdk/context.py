"""The contexts handlers receive. One class per handler kind, each adding what
that kind may do: `Context` (services), `ObjectSharedContext` / `ObjectContext`
(virtual objects), `WorkflowSharedContext` / `WorkflowContext` (workflows)."""

from __future__ import annotations

import asyncio
import random as _random
import time as _time
import typing
import uuid as _uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from perdure.protocol.ids import random_seed_of
from perdure.sdk.futures import (
    DurableCallFuture,
    DurableFuture,
    DurablePromise,
    DurableSleepFuture,
    SendHandle,
    identity,
    value_decoder,
)
from perdure.sdk.handler import handler_of
from perdure.sdk.journal import Failure
from perdure.sdk.machine import Target
from perdure.sdk.options import RunOptions
from perdure.sdk.serde import BytesSerde, DefaultSerde, Serde, serde_for
from perdure.sdk.session import Session

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
HandlerType = Callable[..., Any]
RunAction = Callable[..., Coroutine[Any, Any, T]] | Callable[..., T]


class AttemptFinishedEvent:
    """Set when the current attempt ends (output, suspension, error, disconnect)."""

    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    def is_set(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> None:
        await self._event.wait()


@dataclass
class Request:
    """The invocation's request: id, headers, raw body."""

    id: str
    headers: dict[str, str]
    attempt_headers: dict[str, str]
    body: bytes
    attempt_finished_event: AttemptFinishedEvent
    scope: str | None = None
    limit_key: str | None = None
    idempotency_key: str | None = None


_hint_cache: dict[Any, Any] = {}
HINT_CACHE_SIZE_MAX = 4096  # code objects made at run time (exec) must not grow it forever


def _return_hint(action: Any) -> Any:
    """The action's return annotation (resolved once per code object)."""
    code = getattr(action, "__code__", None)
    if code is None:
        return None
    try:
        return _hint_cache[code]
    except KeyError:
        pass
    hint = getattr(action, "__annotations__", {}).get("return")
    if isinstance(hint, str):
        try:
            hint = typing.get_type_hints(action).get("return")
        except Exception:
            hint = None
    if inspect_is_coroutine_hint(hint):
        hint = None
    if len(_hint_cache) >= HINT_CACHE_SIZE_MAX:
        _hint_cache.clear()
    _hint_cache[code] = hint
    return hint


def inspect_is_coroutine_hint(hint: Any) -> bool:
    return typing.get_origin(hint) in (Coroutine, typing.Awaitable)


def _ms(delta: timedelta) -> int:
    return int(delta.total_seconds() * 1000)


class Context:
    """What every handler can do: durable steps, timers, calls, awakeables."""

    def __init__(self, session: Session, tg: asyncio.TaskGroup, attempt_headers: dict[str, str]) -> None:
        self._session = session
        self._m = session.machine
        self._tg = tg
        self._attempt_headers = attempt_headers
        self._random: _random.Random | None = None

    # ---- invocation facts ----------------------------------------------------------------------

    def request(self) -> Request:
        m = self._m
        return Request(
            id=m.start.debug_id,
            headers={h.key: h.value for h in m.input.headers},
            attempt_headers=self._attempt_headers,
            body=m.input.value.content,
            attempt_finished_event=AttemptFinishedEvent(self._session.finished),
        )

    def random(self) -> _random.Random:
        """A Random seeded by the server: the same numbers on every retry."""
        if self._random is None:
            start = self._m.start
            seed = start.random_seed if self._m.protocol_version >= 6 else random_seed_of(start.id)
            self._random = _random.Random(seed)
        return self._random

    def uuid(self) -> _uuid.UUID:
        """A UUID drawn from `random()`: stable across retries."""
        return _uuid.UUID(int=self.random().getrandbits(128), version=4)

    def time(self) -> DurableFuture[float]:
        """`time.time()` recorded in the journal."""
        return self.run_typed("timestamp", _time.time)

    # ---- durable steps -------------------------------------------------------------------------

    def run(
        self,
        name: str,
        action: RunAction[T],
        serde: Serde[T] = DefaultSerde(),
        max_attempts: int | None = None,
        max_retry_duration: timedelta | None = None,
        type_hint: type[T] | None = None,
        args: tuple[Any, ...] | None = None,
    ) -> DurableFuture[T]:
        """Run `action` once and journal its result; sync actions run in a worker thread."""
        options = RunOptions(
            serde=serde, type_hint=type_hint, max_attempts=max_attempts, max_duration=max_retry_duration
        )
        return self._run(name, action, args or (), {}, options)

    def run_typed(
        self,
        name: str,
        action: Callable[..., Any],
        options: RunOptions[T] | None = None,
        /,
        *args: Any,
        **kwargs: Any,
    ) -> DurableFuture[T]:
        """Like `run`, with options and the action's arguments typed."""
        return self._run(name, action, args, kwargs, options or RunOptions())

    def _run(
        self,
        name: str,
        action: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        options: RunOptions[Any],
    ) -> DurableFuture[Any]:
        hint = options.type_hint if options.type_hint is not None else _return_hint(action)
        serde = serde_for(hint, options.serde) if hint is not None else options.serde
        handle = self._session.start_run(self._tg, name, action, args, kwargs, serde, options)
        return DurableFuture(self._session, handle, value_decoder(serde))

    def sleep(self, delta: timedelta, name: str | None = None) -> DurableSleepFuture:
        """A durable timer: survives restarts, suspends the invocation meanwhile."""
        wake_up = int(_time.time() * 1000) + _ms(delta)
        handle = self._m.sleep(wake_up, name or "")
        return DurableSleepFuture(self._session, handle, identity)

    # ---- calls ---------------------------------------------------------------------------------

    def _call(
        self,
        tpe: HandlerType,
        key: str | None,
        arg: Any,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> DurableCallFuture[Any]:
        h = handler_of(tpe)
        param = h.handler_io.input_serde.serialize(arg) if h.arity == 2 else b""
        target = Target(h.service_tag.name, h.name, key, headers, idempotency_key)
        id_handle, handle = self._m.call(target, param)
        return DurableCallFuture(self._session, handle, value_decoder(h.handler_io.output_serde), id_handle)

    def _send(
        self,
        tpe: HandlerType,
        key: str | None,
        arg: Any,
        send_delay: timedelta | None,
        idempotency_key: str | None,
        headers: dict[str, str] | None,
    ) -> SendHandle:
        h = handler_of(tpe)
        param = h.handler_io.input_serde.serialize(arg) if h.arity == 2 else b""
        at = int(_time.time() * 1000) + _ms(send_delay) if send_delay else 0
        id_handle = self._m.send(Target(h.service_tag.name, h.name, key, headers, idempotency_key), param, at)
        return SendHandle(self._session, id_handle)

    def service_call(
        self,
        tpe: HandlerType,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableCallFuture[Any]:
        return self._call(tpe, None, arg, idempotency_key, headers)

    def service_send(
        self,
        tpe: HandlerType,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        return self._send(tpe, None, arg, send_delay, idempotency_key, headers)

    def object_call(
        self,
        tpe: HandlerType,
        key: str,
        arg: Any,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableCallFuture[Any]:
        return self._call(tpe, key, arg, idempotency_key, headers)

    def object_send(
        self,
        tpe: HandlerType,
        key: str,
        arg: Any,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        return self._send(tpe, key, arg, send_delay, idempotency_key, headers)

    workflow_call = object_call
    workflow_send = object_send

    def generic_call(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> DurableCallFuture[bytes]:
        """Call by name with raw bytes in and out."""
        id_handle, handle = self._m.call(Target(service, handler, key, headers, idempotency_key), arg)
        return DurableCallFuture(self._session, handle, value_decoder(BytesSerde()), id_handle)

    def generic_send(
        self,
        service: str,
        handler: str,
        arg: bytes,
        key: str | None = None,
        send_delay: timedelta | None = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendHandle:
        at = int(_time.time() * 1000) + _ms(send_delay) if send_delay else 0
        id_handle = self._m.send(Target(service, handler, key, headers, idempotency_key), arg, at)
        return SendHandle(self._session, id_handle)

    def cancel_invocation(self, invocation_id: str) -> None:
        self._m.cancel_invocation(invocation_id)

    def attach_invocation(
        self,
        invocation_id: str,
        serde: Serde[T] = DefaultSerde(),
        type_hint: type[T] | None = None,
    ) -> DurableFuture[Any]:
        """Wait for another invocation's result."""
        serde = serde_for(type_hint, serde) if type_hint is not None else serde
        handle = self._m.attach_invocation(invocation_id)
        return DurableFuture(self._session, handle, value_decoder(serde))

    # ---- awakeables ----------------------------------------------------------------------------

    def awakeable(
        self,
        serde: Serde[T] = DefaultSerde(),
        type_hint: type[T] | None = None,
    ) -> tuple[str, DurableFuture[Any]]:
        """An id to hand to the outside world, and the future it completes."""
        serde = serde_for(type_hint, serde) if type_hint is not None else serde
        awakeable_id, handle = self._m.awakeable()
        return awakeable_id, DurableFuture(self._session, handle, value_decoder(serde))

    def resolve_awakeable(self, name: str, value: Any, serde: Serde[Any] = DefaultSerde()) -> None:
        self._m.complete_awakeable(name, serde.serialize(value))

    def reject_awakeable(self, name: str, failure_message: str, failure_code: int = 500) -> None:
        self._m.complete_awakeable(name, Failure(failure_code, failure_message))


class ObjectSharedContext(Context):
    """Shared handlers of an object: the key and read access to its state."""

    def key(self) -> str:
        return str(self._m.start.key)

    def get(
        self,
        name: str,
        serde: Serde[T] = DefaultSerde(),
        type_hint: type[T] | None = None,
        entry_name: str | None = None,
    ) -> DurableFuture[Any]:
        serde = serde_for(type_hint, serde) if type_hint is not None else serde
        handle = self._m.get_state(name, entry_name or "")
        return DurableFuture(self._session, handle, value_decoder(serde))

    def state_keys(self, entry_name: str | None = None) -> DurableFuture[list[str]]:
        return DurableFuture(self._session, self._m.state_keys(entry_name or ""), identity)


class ObjectContext(ObjectSharedContext):
    """Exclusive handlers of an object: read and write its state."""

    def set(
        self,
        name: str,
        value: T,
        serde: Serde[T] = DefaultSerde(),
        entry_name: str | None = None,
    ) -> None:
        self._m.set_state(name, serde.serialize(value), entry_name or "")

    def clear(self, name: str, entry_name: str | None = None) -> None:
        self._m.clear_state(name, entry_name or "")

    def clear_all(self, entry_name: str | None = None) -> None:
        self._m.clear_all_state(entry_name or "")


class _Promises:
    _session: Session

    def promise(
        self,
        name: str,
        serde: Serde[T] = DefaultSerde(),
        type_hint: type[T] | None = None,
    ) -> DurablePromise[Any]:
        """The workflow's durable promise `name`."""
        serde = serde_for(type_hint, serde) if type_hint is not None else serde
        return DurablePromise(self._session, name, serde)


class WorkflowSharedContext(_Promises, ObjectSharedContext):
    """Shared handlers of a workflow: state reads and promises."""


class WorkflowContext(_Promises, ObjectContext):
    """The workflow's main handler."""


def context_class(service_kind: str, handler_kind: str | None) -> type[Context]:
    if service_kind == "service":
        return Context
    if service_kind == "object":
        return ObjectSharedContext if handler_kind == "shared" else ObjectContext
    return WorkflowContext if handler_kind == "workflow" else WorkflowSharedContext
