"""HTTP/2 streams and connections of the invoker's client (see `h2client` for the pool).

One pool of connections per authority; each connection multiplexes many full-duplex streams
(the request body stays open while response frames arrive). The sans-IO connection state is
`h2wire`'s under an asyncio Protocol: bytes from the socket are fed to it, and everything it wants
to send is written at most once per event-loop pass (one coalesced `transport.write`).

Connections are rotated before a peer's lifetime stream limit (hypercorn closes a connection
with GOAWAY after 1,000 streams, and its `h2` state machine cannot finish in-flight streams after
that), streams the peer refused (GOAWAY `last_stream_id` below them, or REFUSED_STREAM) are
replayed on a fresh connection, and the peer's MAX_CONCURRENT_STREAMS is respected.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import TYPE_CHECKING

from perdure.server.invoker import h2wire
from perdure.server.invoker.h2wire import H2ProtocolError, H2Wire, StreamClosed, encode_literal

if TYPE_CHECKING:
    from perdure.server.invoker.h2client import H2Client, _Pool

CONNECT_TIMEOUT_S = 10.0
STREAMS_PER_CONNECTION_MAX = 128
# Rotate a connection after this many streams: hypercorn's `keep_alive_max_requests` default is
# 1,000 and it sends GOAWAY when a connection's stream count goes *above* it.
STREAMS_PER_CONNECTION_LIFETIME_MAX = 1000
CONNECTIONS_PER_AUTHORITY_MAX = 64
INITIAL_CONCURRENT_STREAMS = 100
# Close an unused connection before the peer does (hypercorn's keep-alive timeout is 5 s), so a
# request never races the peer's close.
IDLE_TIMEOUT_S = 4.0
STREAM_WINDOW_BYTES = 1 << 20
CONNECTION_WINDOW_BYTES = 64 << 20
URL_CACHE_MAX = 4096
HEADER_FIELDS_CACHED_MAX = 1024
# Fields that differ on every request: encoding them is cheap, caching them would only churn.
_UNCACHED_FIELDS = frozenset(("x-restate-invocation-id", "traceparent", "x-restate-jwt-v1"))
CANCEL = 8
_REFUSED_STREAM = 7


class H2Error(Exception):
    """Base of the errors of this client."""


class ConnectError(H2Error, OSError):
    """The TCP connection to the endpoint could not be established."""

    def __str__(self) -> str:
        return str(self.strerror) if self.strerror else super().__str__()


class ConnectionLost(H2Error):
    """The connection carrying a stream closed before the stream finished."""


class StreamReset(H2Error):
    """The peer reset the stream (RST_STREAM), or it was reset locally."""

    def __init__(self, error_code: int, message: str | None = None) -> None:
        super().__init__(message or f"stream reset with error code {error_code}")
        self.error_code = error_code


class _HeaderEncoder:
    """Request header blocks as plain literals (`h2wire.encode_literal`): a block is a pure
    function of its fields, so the fields that repeat on every request (method, scheme, authority,
    content type, the deployment's extra headers) are encoded once and cached. No Huffman coding:
    peers like hypercorn decode it slowly."""

    def __init__(self) -> None:
        self._fields: dict[tuple[str, str], bytes] = {}

    def encode(self, headers: list[tuple[str, str]]) -> bytes:
        fields = self._fields
        parts: list[bytes] = []
        for field in headers:
            block = fields.get(field)
            if block is None:
                name, value = field
                block = encode_literal(name.encode("utf-8"), value.encode("utf-8"))
                if len(fields) < HEADER_FIELDS_CACHED_MAX and name not in _UNCACHED_FIELDS:
                    fields[field] = block
            parts.append(block)
        return b"".join(parts)


class H2Stream:
    """One request/response exchange; the request side stays open until `end()`."""

    __slots__ = (
        "_chunks",
        "_client",
        "_conn",
        "_end_queued",
        "_ended_local",
        "_ended_remote",
        "_error",
        "_head",
        "_headers",
        "_out",
        "_refused",
        "_sent",
        "_status",
        "_waiter",
        "pool_key",
        "stream_id",
    )

    def __init__(self, client: H2Client, pool_key: str, head: list[tuple[str, str]]) -> None:
        self._client = client
        self.pool_key = pool_key
        self._head = head
        self._conn: _Connection | None = None
        self.stream_id = 0
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._chunks: collections.deque[bytes] = collections.deque()
        self._out: collections.deque[bytes | memoryview] = collections.deque()
        # Everything sent until the first response frame, kept to replay a refused stream.
        self._sent: list[bytes] | None = []
        self._end_queued = False
        self._ended_local = False
        self._ended_remote = False
        self._refused = False
        self._error: H2Error | None = None
        self._waiter: asyncio.Future[None] | None = None

    async def response(self) -> tuple[int, list[tuple[str, str]]]:
        """Wait for the response status and headers."""
        while not self._status:
            if self._error is not None:
                raise self._error
            await self._wait()
        return self._status, self._headers

    def send(self, data: bytes) -> None:
        """Queue request DATA; it is flushed in this event-loop pass, as flow control allows."""
        if self._end_queued:
            raise H2Error("cannot send after end()")
        if self._error is not None or not data:
            return
        if self._sent is not None:
            self._sent.append(data)
        self._out.append(data)
        if self._conn is not None:
            self._conn.pump(self)

    def end(self) -> None:
        """Close the request side (END_STREAM)."""
        if self._end_queued:
            return
        self._end_queued = True
        if self._error is None and self._conn is not None:
            self._conn.pump(self)

    async def receive(self) -> bytes:
        """Next chunk of response DATA; b"" once the response ended."""
        while True:
            if self._chunks:
                data = self._chunks.popleft()
                if self._conn is not None:
                    self._conn.consumed(self.stream_id, len(data))
                return data
            if self._error is not None:
                raise self._error
            if self._ended_remote:
                return b""
            await self._wait()

    def reset(self, error_code: int = CANCEL) -> None:
        """Abort the stream with RST_STREAM (8 = CANCEL, used to kill an invocation)."""
        if self._error is not None:
            return
        self._fail(StreamReset(error_code, f"stream reset locally with error code {error_code}"))
        if self._conn is not None:
            self._conn.reset(self, error_code)

    async def _wait(self) -> None:
        if self._refused:
            await self._client._reopen(self)
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: H2Error) -> None:
        if self._error is None:
            self._error = error
        self._out.clear()
        self._wake()


class _Connection(asyncio.Protocol):
    """One h2c connection: feeds socket bytes to `h2` and dispatches events to its streams."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.h2 = H2Wire(stream_window=STREAM_WINDOW_BYTES, connection_window=CONNECTION_WINDOW_BYTES)
        self.encoder = _HeaderEncoder()
        self.transport: asyncio.Transport | None = None
        self.loop = asyncio.get_running_loop()
        self.streams: dict[int, H2Stream] = {}
        self.blocked: dict[int, H2Stream] = {}
        self.opened = 0
        self.draining = False
        self.closed = False
        # Until the peer's SETTINGS arrive assume the RFC's recommended minimum of 100 concurrent
        # streams: h2-based servers (hypercorn) answer excess streams with a connection error.
        self.max_concurrent = min(pool.client.streams_per_connection_max, INITIAL_CONCURRENT_STREAMS)
        self._flush_scheduled = False
        self._last_active = time.monotonic()
        self._idle_timer: asyncio.TimerHandle | None = None
        self.lost: asyncio.Future[None] = self.loop.create_future()

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, so no isinstance check.
        self.transport = transport  # type: ignore[assignment]
        self.h2.initiate()
        self._flush()
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive(data)
        except H2ProtocolError as e:
            self._abort(ConnectionLost(f"HTTP/2 protocol error from {self.pool.authority}: {e}"), code=e.code)
            return
        for event in events:
            self._dispatch(event)
        if self.h2.has_output():  # a SETTINGS ack, a PING answer (streams schedule their own)
            self._schedule_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._abort(ConnectionLost(f"connection to {self.pool.authority} closed{reason}"), close=False)

    # --- events ---
    def _dispatch(self, event: h2wire.Event) -> None:
        kind, sid, a, b = event
        if kind == h2wire.EV_DATA:
            self._on_data(sid, a)
        elif kind == h2wire.EV_RESPONSE:
            self._on_response(sid, a, b)
        elif kind == h2wire.EV_ENDED:
            stream = self.streams.get(sid)
            if stream is not None:
                stream._ended_remote = True
                stream._wake()
                self._maybe_release(stream)
        elif kind == h2wire.EV_RESET:
            self._on_reset(sid, a)
        elif kind == h2wire.EV_WINDOW:
            self._on_window(sid)
        elif kind == h2wire.EV_SETTINGS:
            self._on_settings(a)
        elif kind == h2wire.EV_GOAWAY:
            self._on_goaway(sid, a)

    def _on_response(self, sid: int, status: int, headers: list[tuple[str, str]]) -> None:
        stream = self.streams.get(sid)
        if stream is None:
            return
        stream._headers = headers
        stream._status = status
        stream._sent = None
        stream._wake()

    def _on_data(self, sid: int, data: bytes) -> None:
        stream = self.streams.get(sid)
        if stream is None or stream._error is not None:
            self.h2.acknowledge(sid, len(data))  # nobody reads it (the padding is acknowledged already)
            return
        if data:
            stream._chunks.append(data)
            stream._wake()

    def _on_reset(self, sid: int, error_code: int) -> None:
        stream = self.streams.pop(sid, None)
        self.blocked.pop(sid, None)
        if stream is None:
            return
        if error_code == _REFUSED_STREAM and stream._sent is not None:
            self._refuse(stream)
        else:
            stream._fail(StreamReset(error_code))
        self._released()

    def _on_window(self, stream_id: int) -> None:
        if stream_id:
            stream = self.blocked.pop(stream_id, None)
            if stream is not None:
                self.pump(stream)
            return
        blocked = self.blocked
        self.blocked = {}
        for stream in blocked.values():
            self.pump(stream)

    def _on_settings(self, initial_window_changed: bool) -> None:
        peer_max = self.h2.remote_max_concurrent
        client_max = self.pool.client.streams_per_connection_max
        self.max_concurrent = client_max if peer_max is None else min(client_max, peer_max)
        self.pool.wake_all()
        if initial_window_changed:
            self._on_window(0)

    def _on_goaway(self, last: int, error_code: int) -> None:
        """Stop opening streams here; replay refused streams; let processed ones finish."""
        self.draining = True
        # Client stream ids are 1, 3, 5, ...: the peer processed (last + 1) // 2 of ours.
        self.pool.learn_lifetime(min(self.opened, (last + 1) // 2))
        for sid in [sid for sid in self.streams if sid > last]:
            stream = self.streams.pop(sid)
            self.blocked.pop(sid, None)
            if stream._sent is not None:
                self._refuse(stream)
            else:
                stream._fail(ConnectionLost(f"{self.pool.authority} refused the stream (GOAWAY)"))
        if error_code != 0 or not self.streams:
            self._abort(
                ConnectionLost(
                    f"{self.pool.authority} closed the connection (GOAWAY error code {error_code})"
                )
            )
            return
        # RFC 9113 6.8: streams up to last_stream_id may still complete.
        self.pool.released(self)

    def _refuse(self, stream: H2Stream) -> None:
        stream._conn = None
        stream._refused = True
        stream._wake()

    # --- stream operations ---
    def has_capacity(self) -> bool:
        return not self.draining and len(self.streams) < self.max_concurrent

    def open_stream(self, stream: H2Stream) -> None:
        """Send the stream's headers (and anything already queued for it) on this connection."""
        end_now = stream._end_queued and not stream._out
        sid = self.h2.open_stream(self.encoder.encode(stream._head), end_stream=end_now)
        stream._conn = self
        stream.stream_id = sid
        stream._refused = False
        if end_now:
            stream._ended_local = True
        self.streams[sid] = stream
        self.opened += 1
        if self.opened >= self.pool.lifetime_max:
            self.draining = True
        if stream._out:
            self.pump(stream)
        self._schedule_flush()

    def pump(self, stream: H2Stream) -> None:
        """Move queued request DATA into h2 as far as the flow-control windows allow."""
        out = stream._out
        sid = stream.stream_id
        h2conn = self.h2
        try:
            while out:
                window = h2conn.send_window(sid)
                if window <= 0:
                    self.blocked[sid] = stream
                    break
                chunk = out[0]
                if len(chunk) <= window:
                    out.popleft()
                    last = stream._end_queued and not out
                    h2conn.send_data(sid, chunk, end_stream=last)
                    if last:
                        stream._ended_local = True
                else:
                    # Slice views, not bytes: a 30 MB message goes out in 16 KiB frames,
                    # and copying the remainder each time made that quadratic.
                    view = chunk if isinstance(chunk, memoryview) else memoryview(chunk)
                    h2conn.send_data(sid, view[:window])
                    out[0] = view[window:]
            if not out and stream._end_queued and not stream._ended_local:
                h2conn.end_stream(sid)
                stream._ended_local = True
        except StreamClosed:
            out.clear()
            stream._ended_local = True
        self._schedule_flush()
        self._maybe_release(stream)

    def consumed(self, stream_id: int, size: int) -> None:
        """Hand consumed response bytes back to the peer's flow-control window."""
        if self.closed:
            return
        self.h2.acknowledge(stream_id, size)
        if self.h2.has_output():  # a WINDOW_UPDATE, once half a window is consumed
            self._schedule_flush()

    def reset(self, stream: H2Stream, error_code: int) -> None:
        sid = stream.stream_id
        if self.streams.pop(sid, None) is None or self.closed:
            return
        self.blocked.pop(sid, None)
        self.h2.reset_stream(sid, error_code)
        self._schedule_flush()
        self._released()

    def _maybe_release(self, stream: H2Stream) -> None:
        done = stream._ended_local and stream._ended_remote
        if done and self.streams.pop(stream.stream_id, None) is not None:
            self._released()

    def _released(self) -> None:
        self._last_active = time.monotonic()
        if self.draining and not self.streams:
            self._abort(None)
        else:
            self.pool.released(self)

    # --- writing and closing ---
    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.closed:
            self.transport.write(data)

    def _arm_idle_timer(self) -> None:
        delay = self._last_active + self.pool.client.idle_timeout_s - time.monotonic()
        self._idle_timer = self.loop.call_later(max(delay, 0.05), self._on_idle_timer)

    def _on_idle_timer(self) -> None:
        self._idle_timer = None
        if self.closed:
            return
        idle_for = time.monotonic() - self._last_active
        if not self.streams and idle_for >= self.pool.client.idle_timeout_s:
            self._abort(None)
        else:
            self._arm_idle_timer()

    def _abort(self, error: H2Error | None, *, close: bool = True, code: int = h2wire.NO_ERROR) -> None:
        """Fail every stream still here and close the connection (idempotent)."""
        first = not self.closed
        self.closed = True
        self.draining = True
        self.pool.forget(self)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        streams = list(self.streams.values())
        self.streams.clear()
        self.blocked.clear()
        failure = error or ConnectionLost(f"connection to {self.pool.authority} closed")
        for stream in streams:
            stream._fail(failure)
        if first and close and self.transport is not None:
            if error is None or code != h2wire.NO_ERROR:
                self.h2.close(code)
                self.transport.write(self.h2.data_to_send())
            self.transport.close()
        if not self.lost.done():
            self.lost.set_result(None)
