"""HTTP/2 cleartext (h2c, prior knowledge) client for service endpoints.

One pool of connections per authority; each connection multiplexes many full-duplex streams
(the request body stays open while response frames arrive). Built on the sans-IO `h2` library
under an asyncio Protocol: bytes from the socket are fed to `h2`, and everything `h2` wants to
send is written at most once per event-loop pass (one coalesced `transport.write`).

Connections are rotated before a peer's lifetime stream limit (hypercorn closes a connection
with GOAWAY after 1,000 streams, and its `h2` state machine cannot finish in-flight streams after
that), streams the peer refused (GOAWAY `last_stream_id` below them, or REFUSED_STREAM) are
replayed on a fresh connection, and the peer's MAX_CONCURRENT_STREAMS is respected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import os
import ssl
import time
from typing import Any, cast
from urllib.parse import urlsplit

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hpack

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


class _PlainEncoder(hpack.Encoder):
    """HPACK encoder that never Huffman-codes: peers like hypercorn decode Huffman slowly."""

    def encode(self, headers: Any, huffman: bool = False) -> bytes:
        return super().encode(headers, huffman=False)


_H2_CONFIG = h2.config.H2Configuration(
    client_side=True,
    header_encoding="utf-8",
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
)


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
        self._out: collections.deque[bytes] = collections.deque()
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
        self.h2 = h2.connection.H2Connection(config=_H2_CONFIG)
        self.h2.encoder = _PlainEncoder()
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
        self.h2.local_settings = h2.settings.Settings(
            client=True,
            initial_values={
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: STREAM_WINDOW_BYTES,
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
            },
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW_BYTES - 65535)
        self._flush()
        self._arm_idle_timer()

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self._abort(ConnectionLost(f"HTTP/2 protocol error from {self.pool.authority}: {e}"))
            return
        for event in events:
            self._dispatch(event)
        self._schedule_flush()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._abort(ConnectionLost(f"connection to {self.pool.authority} closed{reason}"), close=False)

    # --- events ---
    def _dispatch(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.DataReceived):
            self._on_data(event)
        elif isinstance(event, h2.events.ResponseReceived):
            self._on_response(event)
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._ended_remote = True
                stream._wake()
                self._maybe_release(stream)
        elif isinstance(event, h2.events.StreamReset):
            self._on_reset(event)
        elif isinstance(event, h2.events.WindowUpdated):
            self._on_window(event.stream_id)
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._on_settings(event)
        elif isinstance(event, h2.events.ConnectionTerminated):
            self._on_goaway(event)
        # Trailers, informational responses, pings and priority need no action.

    def _on_response(self, event: h2.events.ResponseReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            return
        # header_encoding="utf-8" makes h2 hand out str pairs (its annotations say bytes).
        headers = cast(list[tuple[str, str]], event.headers)
        status = 0
        out = []
        for name, value in headers:
            if name == ":status":
                status = int(value)
            else:
                out.append((name, value))
        stream._headers = out
        stream._status = status
        stream._sent = None
        stream._wake()

    def _on_data(self, event: h2.events.DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        padding = event.flow_controlled_length - len(event.data)
        if stream is None or stream._error is not None:
            self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            return
        if padding:
            self.h2.acknowledge_received_data(padding, event.stream_id)
        if event.data:
            stream._chunks.append(event.data)
            stream._wake()

    def _on_reset(self, event: h2.events.StreamReset) -> None:
        stream = self.streams.pop(event.stream_id, None)
        self.blocked.pop(event.stream_id, None)
        if stream is None:
            return
        if event.error_code == _REFUSED_STREAM and stream._sent is not None:
            self._refuse(stream)
        else:
            stream._fail(StreamReset(event.error_code))
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

    def _on_settings(self, event: h2.events.RemoteSettingsChanged) -> None:
        peer_max = self.h2.remote_settings.max_concurrent_streams
        self.max_concurrent = min(self.pool.client.streams_per_connection_max, peer_max)
        self.pool.wake_all()
        if h2.settings.SettingCodes.INITIAL_WINDOW_SIZE in event.changed_settings:
            self._on_window(0)

    def _on_goaway(self, event: h2.events.ConnectionTerminated) -> None:
        """Stop opening streams here; replay refused streams; let processed ones finish."""
        self.draining = True
        last = event.last_stream_id if event.last_stream_id is not None else 0
        # Client stream ids are 1, 3, 5, ...: the peer processed (last + 1) // 2 of ours.
        self.pool.learn_lifetime(min(self.opened, (last + 1) // 2))
        for sid in [sid for sid in self.streams if sid > last]:
            stream = self.streams.pop(sid)
            self.blocked.pop(sid, None)
            if stream._sent is not None:
                self._refuse(stream)
            else:
                stream._fail(ConnectionLost(f"{self.pool.authority} refused the stream (GOAWAY)"))
        if event.error_code != 0 or not self.streams:
            self._abort(
                ConnectionLost(
                    f"{self.pool.authority} closed the connection (GOAWAY error code {event.error_code})"
                )
            )
            return
        # h2 treats a received GOAWAY as terminal, but RFC 9113 lets streams up to
        # last_stream_id complete; keep the state machine open so their frames are accepted.
        self.h2.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
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
        sid = self.h2.get_next_available_stream_id()
        end_now = stream._end_queued and not stream._out
        self.h2.send_headers(sid, stream._head, end_stream=end_now)
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
                window = min(h2conn.local_flow_control_window(sid), h2conn.max_outbound_frame_size)
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
                    h2conn.send_data(sid, chunk[:window])
                    out[0] = chunk[window:]
            if not out and stream._end_queued and not stream._ended_local:
                h2conn.end_stream(sid)
                stream._ended_local = True
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            out.clear()
            stream._ended_local = True
        self._schedule_flush()
        self._maybe_release(stream)

    def consumed(self, stream_id: int, size: int) -> None:
        """Hand consumed response bytes back to the peer's flow-control window."""
        if self.closed:
            return
        self.h2.acknowledge_received_data(size, stream_id)
        self._schedule_flush()

    def reset(self, stream: H2Stream, error_code: int) -> None:
        sid = stream.stream_id
        if self.streams.pop(sid, None) is None or self.closed:
            return
        self.blocked.pop(sid, None)
        with contextlib.suppress(h2.exceptions.StreamClosedError):
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

    def _abort(self, error: H2Error | None, *, close: bool = True) -> None:
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
            if error is None:
                try:
                    self.h2.close_connection()
                    self.transport.write(self.h2.data_to_send())
                except h2.exceptions.ProtocolError:
                    pass
            self.transport.close()
        if not self.lost.done():
            self.lost.set_result(None)


class _Pool:
    """Connections to one authority; opens new ones when all are full or draining."""

    def __init__(self, client: H2Client, authority: str, host: str, port: int, scheme: str = "http") -> None:
        self.client = client
        self.authority = authority
        self.host = host
        self.port = port
        self.scheme = scheme
        self.key = f"{scheme}://{authority}"  # the client's pools are keyed by scheme and authority
        self.conns: list[_Connection] = []
        self.lifetime_max = client.streams_per_connection_lifetime_max
        self._connecting: asyncio.Future[_Connection] | None = None
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def pick(self) -> _Connection | None:
        for conn in self.conns:
            if conn.has_capacity():
                return conn
        return None

    async def acquire(self) -> _Connection:
        while True:
            conn = self.pick()
            if conn is not None:
                return conn
            if self._connecting is not None:
                await asyncio.shield(self._connecting)
                continue
            if len(self.conns) >= CONNECTIONS_PER_AUTHORITY_MAX:
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter
                continue
            return await self._connect()

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        self._connecting = fut = loop.create_future()
        try:
            async with asyncio.timeout(self.client.connect_timeout_s):
                if self.scheme == "https":
                    _, proto = await loop.create_connection(
                        lambda: _Connection(self),
                        self.host,
                        self.port,
                        ssl=self.client.tls_context(),
                        server_hostname=self.host,
                    )
                else:
                    _, proto = await loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except TimeoutError:
            err = ConnectError(
                errno.ETIMEDOUT,
                f"connect to {self.authority} timed out after {self.client.connect_timeout_s}s",
            )
            fut.set_exception(err)
            raise err from None
        except OSError as e:
            err = ConnectError(e.errno, _describe_os_error(e))
            fut.set_exception(err)
            raise err from e
        except BaseException as e:
            fut.set_exception(ConnectError(errno.ECANCELED, f"connect to {self.authority} cancelled"))
            raise e
        finally:
            self._connecting = None
            if fut.done() and fut.exception() is not None:
                fut.exception()  # mark retrieved: waiters that come later retry on their own
        self.conns.append(proto)
        fut.set_result(proto)
        return proto

    def learn_lifetime(self, opened: int) -> None:
        """A peer closed after `opened` streams: rotate future connections one stream earlier."""
        if 1 < opened <= self.lifetime_max:
            self.lifetime_max = opened - 1
            for conn in self.conns:
                if conn.opened >= self.lifetime_max:
                    conn.draining = True

    def released(self, conn: _Connection) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def wake_all(self) -> None:
        waiters = self._waiters
        self._waiters = collections.deque()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def forget(self, conn: _Connection) -> None:
        if conn in self.conns:
            self.conns.remove(conn)
        self.released(conn)


def _describe_os_error(e: OSError) -> str:
    """Like Rust's io::Error display, which Restate's messages embed: `Connection refused (os error 111)`."""
    if e.errno is not None:
        return f"{os.strerror(e.errno)} (os error {e.errno})"
    return str(e) or type(e).__name__


class H2Client:
    """Pooled h2c client: `request()` opens a stream on a connection to the URL's authority."""

    def __init__(
        self,
        *,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
        streams_per_connection_max: int = STREAMS_PER_CONNECTION_MAX,
        streams_per_connection_lifetime_max: int = STREAMS_PER_CONNECTION_LIFETIME_MAX,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        assert streams_per_connection_max >= 1 and streams_per_connection_lifetime_max >= 1
        self.connect_timeout_s = connect_timeout_s
        self.streams_per_connection_max = streams_per_connection_max
        self.streams_per_connection_lifetime_max = streams_per_connection_lifetime_max
        self.idle_timeout_s = idle_timeout_s
        self._pools: dict[str, _Pool] = {}
        self._urls: dict[str, tuple[_Pool, str]] = {}
        self._closed = False
        self._tls: ssl.SSLContext | None = None

    def tls_context(self) -> ssl.SSLContext:
        """For https:// endpoints: system trust store (or SSL_CERT_FILE), HTTP/2 by ALPN."""
        if self._tls is None:
            ctx = ssl.create_default_context()
            ctx.set_alpn_protocols(["h2"])
            self._tls = ctx
        return self._tls

    async def request(
        self, url: str, method: str, headers: list[tuple[str, str]], *, end_stream: bool = False
    ) -> H2Stream:
        """Open a stream for `method url`; with `end_stream` the request has no body."""
        if self._closed:
            raise H2Error("client is closed")
        target = self._urls.get(url)
        if target is None:
            target = self._resolve(url)
        pool, path = target
        head = [
            (":method", method),
            (":scheme", pool.scheme),
            (":authority", pool.authority),
            (":path", path),
            *headers,
        ]
        stream = H2Stream(self, pool.key, head)
        stream._end_queued = end_stream
        await self._open(pool, stream)
        return stream

    async def _open(self, pool: _Pool, stream: H2Stream) -> None:
        conn = pool.pick() or await pool.acquire()
        try:
            conn.open_stream(stream)
        except h2.exceptions.TooManyStreamsError:
            conn.max_concurrent = max(1, len(conn.streams))
            await self._open(pool, stream)

    async def _reopen(self, stream: H2Stream) -> None:
        """Replay a stream the peer refused (never processed) on another connection."""
        pool = self._pools.get(stream.pool_key)
        if pool is None or self._closed:
            stream._fail(ConnectionLost("client closed"))
            return
        if stream._sent is not None:
            stream._out = collections.deque(stream._sent)
        stream._ended_local = False
        try:
            await self._open(pool, stream)
        except H2Error as e:
            stream._fail(e)

    def _resolve(self, url: str) -> tuple[_Pool, str]:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise H2Error(f"unsupported URL scheme in {url!r}: use http:// (h2c) or https:// (h2 over TLS)")
        host = parts.hostname
        if not host:
            raise H2Error(f"URL without host: {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        authority = parts.netloc
        key = f"{parts.scheme}://{authority}"
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = _Pool(self, authority, host, port, parts.scheme)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        if len(self._urls) >= URL_CACHE_MAX:
            self._urls.clear()
        self._urls[url] = (pool, path)
        return pool, path

    def connection_count(self, authority: str, scheme: str = "http") -> int:
        """Open connections to `authority` (for tests and metrics)."""
        pool = self._pools.get(f"{scheme}://{authority}")
        return len(pool.conns) if pool else 0

    async def aclose(self) -> None:
        """Close every connection; streams still open fail with ConnectionLost."""
        self._closed = True
        conns = [c for pool in self._pools.values() for c in pool.conns]
        for conn in conns:
            conn._abort(ConnectionLost("client closed"))
        if conns:
            await asyncio.wait([c.lost for c in conns], timeout=1.0)
        self._pools.clear()
        self._urls.clear()


__all__ = [
    "CANCEL",
    "ConnectError",
    "ConnectionLost",
    "H2Client",
    "H2Error",
    "H2Stream",
    "StreamReset",
]
