"""One attempt of an invocation against its pinned deployment.

Opens the stream, sends Start and the known journal, turns every message the
service streams back into a processor command, and forwards the
notifications the processor releases (after they are durable)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.errors import ProtocolError
from perdure.protocol.framing import FrameDecoder, encode_frame
from perdure.record import record
from perdure.server.invoker.h2client import H2Error
from perdure.server.processor.commands import AttemptFailed, AttemptOpened, Command, SdkMessage
from perdure.server.processor.effects import StartAttempt

if TYPE_CHECKING:  # signing pulls in cryptography and PyJWT; imported only when configured
    from perdure.server.invoker.identity import RequestSigner

log = logging.getLogger("perdure.invoker")

PROTOCOL_VERSION_MAX = 6
PROTOCOL_VERSION_MIN = 5
TERMINAL = frozenset((T.END, T.SUSPENSION, T.ERROR))
_ENDED_AS: dict[int, str] = {T.END: "completed", T.SUSPENSION: "suspended", T.ERROR: "failed"}


class StreamLike(Protocol):
    async def response(self) -> tuple[int, list[tuple[str, str]]]: ...
    def send(self, data: bytes) -> None: ...
    def end(self) -> None: ...
    async def receive(self) -> bytes: ...
    def reset(self, error_code: int = 8) -> None: ...


class Opener(Protocol):
    async def request(
        self, url: str, method: str, headers: list[tuple[str, str]], *, end_stream: bool = False
    ) -> StreamLike: ...


@record
class Endpoint:
    """What the attempt needs of a deployment."""

    uri: str
    request_response: bool
    protocol_version: int
    additional_headers: tuple[tuple[str, str], ...]
    http1: bool = False
    signer: RequestSigner | None = None  # request identity: signature headers per request path


class AttemptFailure(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def start_message(s: StartAttempt) -> bytes:
    msg = pb.StartMessage(
        id=s.invocation,
        debug_id=s.invocation_id,
        known_entries=len(s.journal),
        state_map=[pb.StartMessage.StateEntry(key=k, value=v) for k, v in s.state],
        partial_state=s.partial_state,
        key=s.target.key or "",
        retry_count_since_last_stored_entry=s.retry_count_since_last_stored_entry,
        duration_since_last_stored_entry=s.duration_since_last_stored_entry_ms,
        random_seed=s.random_seed,
    )
    out = [encode_frame(T.START, msg.SerializeToString())]
    out.extend(encode_frame(e.type, e.body) for e in s.journal)
    return b"".join(out)


class Attempt:
    """A live attempt. `deliver` forwards released notifications; `abort` kills it."""

    def __init__(
        self,
        start: StartAttempt,
        endpoint: Endpoint,
        opener: Opener,
        submit: Callable[[Command], None],
        *,
        message_size_max: int,
        on_activity: Callable[[Attempt, bool], None] | None = None,
    ) -> None:
        self.start = start
        self._endpoint = endpoint
        self._opener = opener
        self._submit = submit
        self._stream: StreamLike | None = None
        self._pending: list[bytes] = []
        self._request_open = True
        self._decoder = FrameDecoder(message_size_max)
        self._on_activity = on_activity
        self._runs_open = 0  # RunCommands without their ProposeRunCompletion: the service is busy
        self._abort_deadline: float | None = None  # loop time, once our request side is ended
        self._timeout: asyncio.Timeout | None = None  # the pump's timer, while it receives
        self._deadline_now = 0.0  # when the pump's quiet period ends (loop time)
        self._done = False  # End, Suspension or Error received
        self.task: asyncio.Task[None] | None = None
        # For telemetry: how the attempt ended, and the endpoint's HTTP status.
        self.ended_as = "failed"  # "completed" | "suspended" | "failed" | "aborted"
        self.response_status: int | None = None
        self.span: Any = None  # the attempt's trace span, when tracing
        self.trace_headers: list[tuple[str, str]] = []  # its context, sent to the service

    @property
    def endpoint(self) -> Endpoint:
        return self._endpoint

    @property
    def deployment_type(self) -> str:
        """Restate's label for the kind of endpoint (metrics)."""
        return "Http/request-response" if self._endpoint.request_response else "Http/bidi-stream"

    @property
    def fresh(self) -> bool:
        """The first attempt of a new invocation (nothing journaled beyond the input, no retry)."""
        return len(self.start.journal) <= 1 and self.start.retry_count_since_last_stored_entry == 0

    def park(self) -> None:
        """Make room: end our side of the stream so the service suspends (it
        has the abort timeout to finish); nothing more is delivered to it."""
        if not self._request_open:
            return
        self._request_open = False
        if self._stream is not None:
            with contextlib.suppress(H2Error):
                self._stream.end()
            self._abort_deadline = asyncio.get_running_loop().time() + self.start.abort_timeout_ms / 1000
            timeout = self._timeout
            if timeout is not None and (timeout.when() or 0.0) > self._abort_deadline:
                self._deadline_now = self._abort_deadline
                timeout.reschedule(self._abort_deadline)

    def deliver(self, msg_type: int, body: bytes) -> None:
        if not self._request_open:
            return  # the service will suspend and resume with the journal
        frame = encode_frame(msg_type, body)
        if self._stream is None:
            self._pending.append(frame)
        else:
            self._stream.send(frame)
        if self._on_activity is not None:
            self._on_activity(self, self._runs_open == 0)

    def abort(self) -> None:
        self.ended_as = "aborted"
        if self._stream is not None:
            with contextlib.suppress(H2Error):
                self._stream.reset(8)
        if self.task is not None:
            self.task.cancel()

    async def run(self) -> None:
        s = self.start
        try:
            await self._run()
        except AttemptFailure as exc:
            self._submit(AttemptFailed(s.invocation, s.attempt, exc.code, exc.message))
        except ProtocolError as exc:
            self._reset_quietly()
            self._submit(AttemptFailed(s.invocation, s.attempt, exc.code, str(exc)))
        except (H2Error, OSError) as exc:
            self._submit(AttemptFailed(s.invocation, s.attempt, 503, f"{type(exc).__name__}: {exc}"))

    def _reset_quietly(self) -> None:
        if self._stream is not None:
            with contextlib.suppress(H2Error):
                self._stream.reset(8)

    async def _run(self) -> None:
        s, ep = self.start, self._endpoint
        content_type = f"application/vnd.restate.invocation.v{ep.protocol_version}"
        headers = [
            ("content-type", content_type),
            ("accept", content_type),
            ("x-restate-invocation-id", s.invocation_id),
        ]
        key = s.target.key
        if key is not None and key.isascii() and key.isprintable() and key == key.strip():
            # Informational only (the SDK reads the key from Start); a key that is not a
            # valid header value would make the endpoint drop the whole connection.
            headers.append(("x-restate-service-key", key))
        headers.extend(ep.additional_headers)
        headers.extend(self.trace_headers)
        url = f"{ep.uri}invoke/{s.target.service}/{s.target.handler}"
        if ep.signer is not None:
            # Signed for the path under the deployment URI, as Restate signs it.
            headers.extend(ep.signer.headers(f"/invoke/{s.target.service}/{s.target.handler}"))
        stream = await self._opener.request(url, "POST", headers)
        stream.send(start_message(s))
        for frame in self._pending:
            stream.send(frame)
        self._pending.clear()
        self._stream = stream
        if ep.request_response or not self._request_open:  # request-response, or parked already
            self._request_open = False
            stream.end()
            self._abort_deadline = asyncio.get_running_loop().time() + s.abort_timeout_ms / 1000
        status, rheaders = await stream.response()
        self.response_status = status
        server = _header(rheaders, "x-restate-server")
        if not 200 <= status < 300:
            raise AttemptFailure(status, _status_message(status))
        ctype = _header(rheaders, "content-type")
        if ctype is not None and ctype != content_type:
            raise AttemptFailure(
                571, f"unexpected content-type '{ctype}' in the response, expected '{content_type}'"
            )
        self._submit(AttemptOpened(s.invocation, s.attempt, server))
        await self._pump(stream)

    def _deadline(self, loop: asyncio.AbstractEventLoop, inactivity_s: float, abort_s: float) -> float:
        """While our side is open, the inactivity timeout from now; after, the abort timeout
        from when it closed (or from the parking)."""
        if self._request_open and inactivity_s > 0:
            return loop.time() + inactivity_s
        if self._abort_deadline is None:
            self._abort_deadline = loop.time() + abort_s
        return self._abort_deadline

    async def _pump(self, stream: StreamLike) -> None:
        s = self.start
        loop = asyncio.get_running_loop()
        inactivity_s = s.inactivity_timeout_ms / 1000 if not self._endpoint.request_response else 0
        abort_s = s.abort_timeout_ms / 1000
        self._done = False
        # One timer per quiet period, not one per message: each message only moves `deadline`,
        # and when the timer fires early (there was activity since) it is set again.
        while True:
            deadline = self._deadline(loop, inactivity_s, abort_s)
            try:
                async with asyncio.timeout_at(deadline) as self._timeout:
                    ended = await self._receive_all(stream, loop, inactivity_s, abort_s)
            except TimeoutError:
                if loop.time() < self._deadline_now:
                    continue  # there was activity: not idle for the whole timeout
                if self._request_open:
                    # No progress for the inactivity timeout: close our side so the
                    # service suspends; it has the abort timeout to finish.
                    self._request_open = False
                    stream.end()
                    continue
                if self._abort_deadline is not None and loop.time() < self._abort_deadline:
                    continue  # parked meanwhile: the abort timeout runs from the parking
                self._reset_quietly()
                raise AttemptFailure(
                    599, f"the service did not finish within the abort timeout of {abort_s:.0f}s"
                ) from None
            if ended:
                break
        if self._request_open:
            self._request_open = False
            with contextlib.suppress(H2Error):
                stream.end()
        if not self._done:
            raise AttemptFailure(503, "the service closed the stream without End, Suspension or Error")

    async def _receive_all(
        self, stream: StreamLike, loop: asyncio.AbstractEventLoop, inactivity_s: float, abort_s: float
    ) -> bool:
        """Receive and decode until the response ends (True)."""
        s = self.start
        while True:
            self._deadline_now = self._deadline(loop, inactivity_s, abort_s)
            data = await stream.receive()
            if not data:
                return True
            for frame in self._decoder.feed(data):
                if self._done:
                    raise ProtocolError(f"message 0x{frame.type:04x} after the end of the invocation")
                self._submit(SdkMessage(s.invocation, s.attempt, frame.type, frame.body))
                if frame.type == T.RUN:
                    self._runs_open += 1
                elif frame.type == T.PROPOSE_RUN_COMPLETION and self._runs_open > 0:
                    self._runs_open -= 1
                if frame.type in TERMINAL:
                    self._done = True
                    self.ended_as = _ENDED_AS[frame.type]
                    if self._request_open:  # the server closes its side first
                        self._request_open = False
                        stream.end()
            if self._on_activity is not None and not self._done:
                self._on_activity(self, self._runs_open == 0)


def _header(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k == name:
            return v
    return None


def _status_message(status: int) -> str:
    reasons = {
        404: "the service endpoint answered 404: service or handler not found",
        415: "bad negotiated protocol version: the service endpoint answered 415",
        413: "content too large: the service endpoint answered 413",
        429: "the service endpoint is rate limiting (429)",
        502: "service unavailable (502)",
        503: "service unavailable (503)",
        504: "service unavailable (504)",
    }
    return reasons.get(status, f"the service endpoint answered HTTP {status}")
