"""The asyncio driver of one invocation attempt: moves bytes between the ASGI
stream and the sans-IO Machine, runs the handler, executes `ctx.run` actions
(sync ones in a worker thread), waits for handles, and ends the attempt with
output, suspension or a retryable error."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
import traceback
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from perdure.protocol.codec import MessageType
from perdure.protocol.errors import JournalMismatch, ProtocolError
from perdure.sdk.errors import AttemptFailed, RetryableError, SuspendedException, TerminalError
from perdure.sdk.handler import Handler
from perdure.sdk.journal import Failure
from perdure.sdk.machine import Machine, MachineClosed
from perdure.sdk.options import RunOptions
from perdure.sdk.serde import Serde

logger = logging.getLogger("perdure.sdk")

Message = MutableMapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[Message], Any]

DRAIN_TIMEOUT_S = 10.0  # how long to wait for the server to close its side after we ended


@dataclass
class _RunFailure:
    """A retryable `ctx.run` failure that ends the attempt."""

    exc: BaseException
    stacktrace: str
    command_index: int
    name: str
    next_retry_delay: timedelta | None


class Session:
    """One invocation attempt on one HTTP stream."""

    def __init__(self, machine: Machine, receive: Receive, send: Send) -> None:
        self.machine = machine
        self._receive = receive
        self._send = send
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._progress: asyncio.Future[None] = loop.create_future()
        self._send_lock = asyncio.Lock()
        self._runs: set[asyncio.Task[None]] = set()
        self._run_failure: _RunFailure | None = None
        self._cancel_consumed = False
        self.disconnected = False
        self.protocol_error: ProtocolError | None = None
        self.finished = asyncio.Event()

    # ---- I/O ----------------------------------------------------------------------------------

    async def read_until_ready(self) -> None:
        """Receive Start and the known journal (they usually come in one chunk)."""
        m = self.machine
        while not m.ready:
            msg = await self._receive()
            if msg["type"] == "http.disconnect":
                raise ProtocolError("the server disconnected before sending the journal")
            m.feed(msg.get("body", b""))
            if not msg.get("more_body", False):
                m.feed_eof()
                return

    async def read_loop(self) -> None:
        """Feed server messages to the machine until the server ends its side."""
        m = self.machine
        try:
            while not m.input_closed:
                msg = await self._receive()
                if msg["type"] == "http.request":
                    body = msg.get("body", b"")
                    if body and m.feed(body):
                        self._notify()
                    if not msg.get("more_body", False):
                        m.feed_eof()
                else:  # http.disconnect: the stream was reset or the connection dropped
                    self.disconnected = True
                    m.input_closed = True
        except ProtocolError as e:
            self.protocol_error = e
            m.input_closed = True
        self._notify()

    def _notify(self) -> None:
        """Wake every waiter (they re-check their handles)."""
        fut = self._progress
        if not fut.done():
            fut.set_result(None)
            self._progress = self._loop.create_future()

    async def flush(self, more_body: bool = True) -> None:
        data = self.machine.take_output()
        if (not data and more_body) or self.disconnected:
            return
        async with self._send_lock:
            await self._send({"type": "http.response.body", "body": data, "more_body": more_body})

    # ---- waiting ------------------------------------------------------------------------------

    async def wait(self, handles: Iterable[int], wait_all: bool) -> None:
        """Return once all (or any) of `handles` completed; raise TerminalError on
        cancellation; suspend when nothing more can arrive."""
        m = self.machine
        handles = tuple(handles)
        while True:
            done = [m.is_completed(h) for h in handles]
            if (all(done) if wait_all else any(done)) and self._run_failure is None:
                return
            if self._run_failure is not None or self.disconnected or self.protocol_error is not None:
                raise AttemptFailed(self._run_failure.exc if self._run_failure else None)
            if m.cancel_received and not self._cancel_consumed:
                self._cancel_consumed = True
                raise TerminalError("cancelled", 409)
            if m.input_closed and not self._runs:
                m.suspend(h for h, d in zip(handles, done, strict=True) if not d)
                raise SuspendedException()
            progress = self._progress
            if not self._runs:  # a running action flushes with its proposal: one write, not two
                await self.flush()
            await progress

    # ---- ctx.run ------------------------------------------------------------------------------

    def start_run(
        self,
        tg: asyncio.TaskGroup,
        name: str,
        action: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        serde: Serde[Any],
        options: RunOptions[Any],
    ) -> int:
        """Record a Run command; execute the action unless the journal already has
        its result. Returns the handle."""
        handle, index, replayed = self.machine.run(name)
        if not self.machine.is_completed(handle):
            coro = self._execute_run(handle, index, replayed, name, action, args, kwargs, serde, options)
            task = tg.create_task(coro)
            self._runs.add(task)
            task.add_done_callback(self._run_done)
        return handle

    def _run_done(self, task: asyncio.Task[None]) -> None:
        self._runs.discard(task)
        self._notify()

    async def _execute_run(
        self,
        handle: int,
        index: int,
        replayed: bool,
        name: str,
        action: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        serde: Serde[Any],
        options: RunOptions[Any],
    ) -> None:
        started = time.monotonic()
        result: bytes | Failure | None
        try:
            if inspect.iscoroutinefunction(action):
                value = await action(*args, **kwargs)
            else:
                value = await asyncio.to_thread(action, *args, **kwargs)
                if inspect.isawaitable(value):
                    value = await value
            result = serde.serialize(value)
        except TerminalError as e:
            result = Failure(e.status_code, e.message)
        except Exception as e:
            result = self._on_run_error(e, index, replayed, name, options, time.monotonic() - started)
        if result is not None:
            self.machine.propose_run(handle, result)
            await self.flush()

    def _on_run_error(
        self,
        exc: Exception,
        index: int,
        replayed: bool,
        name: str,
        options: RunOptions[Any],
        elapsed_s: float,
    ) -> Failure | None:
        """Apply the run's retry policy: a terminal Failure once exhausted, else
        record a retryable failure that ends this attempt."""
        start = self.machine.start
        retries = start.retry_count_since_last_stored_entry if replayed else 0
        elapsed = timedelta(seconds=elapsed_s)
        if replayed:
            elapsed += timedelta(milliseconds=start.duration_since_last_stored_entry)
        delay = exc.retry_after if isinstance(exc, RetryableError) else None
        if options.has_retry_policy():
            max_duration = options.max_duration or options.max_retry_duration
            attempts = retries + 1
            if (options.max_attempts is not None and attempts >= options.max_attempts) or (
                max_duration is not None and elapsed >= max_duration
            ):
                return Failure(500, f"{type(exc).__name__}: {exc} (gave up after {attempts} attempts)")
            delay = delay or options.retry_delay(retries)
        if self._run_failure is None:
            stack = "".join(traceback.format_exception(exc))
            self._run_failure = _RunFailure(exc, stack, index, name, delay)
        return None

    # ---- the attempt --------------------------------------------------------------------------

    async def execute(self, handler: Handler, ctx: Any, tg: asyncio.TaskGroup) -> None:
        """Run the handler and write how the attempt ends into the machine."""
        m = self.machine
        try:
            output = await _invoke(handler, ctx, m.input.value.content)
            if m.mismatch is None and self._run_failure is None and self.protocol_error is None:
                m.output(output)
        except TerminalError as e:
            if m.mismatch is None and self._run_failure is None:
                m.output(Failure(e.status_code, e.message))
        except (SuspendedException, AttemptFailed, JournalMismatch, MachineClosed):
            pass
        except Exception as e:
            if not m.closed and m.mismatch is None and self._run_failure is None:
                delay = e.retry_after if isinstance(e, RetryableError) else None
                code = e.status_code if isinstance(e, RetryableError) else 500
                stack = "".join(traceback.format_exception(e))
                m.fail(code, f"{type(e).__name__}: {e}", stack, next_retry_delay_ms=_ms(delay))
        self._end_pending_failures()

    def _end_pending_failures(self) -> None:
        m = self.machine
        if m.closed:
            return
        if m.mismatch is not None:
            m.fail_mismatch()
        elif self.protocol_error is not None:
            m.fail(self.protocol_error.code, str(self.protocol_error))
        elif (f := self._run_failure) is not None:
            m.fail(
                500,
                f"{type(f.exc).__name__}: {f.exc}",
                f.stacktrace,
                command_index=f.command_index,
                command_name=f.name,
                command_type=MessageType.RUN,
                next_retry_delay_ms=_ms(f.next_retry_delay),
            )

    async def close(self, reader: asyncio.Task[None]) -> None:
        """Send the last messages, let the server end its side, then end ours.
        Ending ours first would make hypercorn drop the stream while the
        server's end-of-stream is still in flight."""
        for task in list(self._runs):
            task.cancel()
        self.finished.set()
        with contextlib.suppress(Exception):
            await self.flush()
        if not reader.done():
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT_S):
                    await asyncio.shield(reader)
            except TimeoutError:
                reader.cancel()
        with contextlib.suppress(Exception):
            await self.flush(more_body=False)


async def _invoke(handler: Handler, ctx: Any, body: bytes) -> bytes:
    io = handler.handler_io
    args: tuple[Any, ...] = (ctx,)
    if handler.arity == 2:
        try:
            args = (ctx, io.input_serde.deserialize(body))
        except Exception as e:
            raise TerminalError(f"Unable to parse an input argument. {e}", 400) from e
    managers = handler.options.context_managers
    if not managers:
        out = await handler.fn(*args)
    else:
        async with contextlib.AsyncExitStack() as stack:
            for make in managers:
                await stack.enter_async_context(make())
            out = await handler.fn(*args)
    return io.output_serde.serialize(out)


def _ms(delay: timedelta | None) -> int | None:
    return None if delay is None else int(delay.total_seconds() * 1000)
