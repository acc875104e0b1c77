"""HTTP/2 client for service endpoints: h2c (prior knowledge) or TLS with ALPN.

One pool of connections per scheme and authority; each connection (`h2connection`) multiplexes
many full-duplex streams. New connections open when all are full or draining, and connect
errors are reported with the peer's address."""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import ssl
from urllib.parse import urlsplit

from perdure.server.invoker.h2connection import (
    CANCEL,
    CONNECT_TIMEOUT_S,
    CONNECTIONS_PER_AUTHORITY_MAX,
    IDLE_TIMEOUT_S,
    STREAMS_PER_CONNECTION_LIFETIME_MAX,
    STREAMS_PER_CONNECTION_MAX,
    URL_CACHE_MAX,
    ConnectError,
    ConnectionLost,
    H2Error,
    H2Stream,
    StreamReset,
    _Connection,
)


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
        conn.open_stream(stream)

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
