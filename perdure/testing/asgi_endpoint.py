"""In-process service endpoints: the invoker's `Opener` over ASGI apps, no sockets or ports.

A deployment URI `http://<name>.asgi/` names an app registered with `AsgiEndpoints.add`; each
request runs the app as a task of the harness's task group with a full-duplex body (what the
service protocol's bidi mode needs), with `http_version` "2" so SDKs pick bidi streaming.

SDKs compute a sleep's wake-up time (and a delayed send's invoke time) from their own wall
clock, while the harness clock runs ahead by the time a test advanced it. With `clock_offset_ms`,
those absolute times in what a service sends are moved onto the harness clock as they pass (the
journal records them there), so a sleep after an `advance` still lasts what the code says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from perdure.protocol.codec import MessageType, decode
from perdure.protocol.framing import Frame, FrameDecoder
from perdure.server.invoker.h2client import H2Error

ASGIApp = Any  # an ASGI 3 application (the official SDK's `restate.app(...)` or `perdure.app(...)`)
HOST_SUFFIX = ".asgi"
_DISCONNECT = b"\x00disconnect"  # queued by reset: the app's next receive() is a disconnect
_TIMED = {MessageType.SLEEP: "wake_up_time", MessageType.ONE_WAY_CALL: "invoke_time"}


class ClockShift:
    """Moves the absolute times of the commands a service streams onto the harness clock."""

    def __init__(self, offset_ms: Callable[[], int]) -> None:
        self._offset_ms = offset_ms
        self._decoder = FrameDecoder()

    def __call__(self, data: bytes) -> bytes:
        return b"".join(self._frame(f).encode() for f in self._decoder.feed(data))

    def _frame(self, frame: Frame) -> Frame:
        field = _TIMED.get(MessageType(frame.type)) if frame.type in _TIMED_TYPES else None
        offset = self._offset_ms()
        if field is None or offset == 0:
            return frame
        msg = decode(frame.type, frame.body)
        if getattr(msg, field) == 0:  # a send without a delay
            return frame
        setattr(msg, field, getattr(msg, field) + offset)
        return Frame(frame.type, frame.flags, msg.SerializeToString())


_TIMED_TYPES = frozenset(int(t) for t in _TIMED)


class EndpointError(H2Error):
    """The URI names no registered app (what a refused connection is for a real endpoint)."""


class AsgiStream:
    """One request to an app: the same interface as the h2 client's streams."""

    def __init__(
        self,
        app: ASGIApp,
        scope: dict[str, Any],
        tg: asyncio.TaskGroup,
        end_stream: bool,
        shift: ClockShift | None = None,
    ) -> None:
        self._shift = shift
        self._request: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._response: asyncio.Queue[bytes] = asyncio.Queue()
        self._start: asyncio.Future[tuple[int, list[tuple[str, str]]]] = (
            asyncio.get_running_loop().create_future()
        )
        self._ended = False
        self._disconnected = asyncio.Event()
        if end_stream:
            self.end()
        self._task = tg.create_task(self._serve(app, scope))

    async def _serve(self, app: ASGIApp, scope: dict[str, Any]) -> None:
        try:
            await app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # the app crashed: what a reset stream is for a real endpoint
            if not self._start.done():
                self._start.set_exception(EndpointError(f"the service app failed: {exc!r}"))
        finally:
            self._response.put_nowait(b"")
            if not self._start.done():
                self._start.set_exception(EndpointError("the service app ended without a response"))

    async def _receive(self) -> dict[str, Any]:
        if self._disconnected.is_set():
            return {"type": "http.disconnect"}
        if self._ended and self._request.empty():
            await self._disconnected.wait()
            return {"type": "http.disconnect"}
        chunk = await self._request.get()
        if chunk is _DISCONNECT:
            return {"type": "http.disconnect"}
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def _send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [
                (k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in message.get("headers", [])
            ]
            if not self._start.done():
                self._start.set_result((int(message["status"]), headers))
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            if body and self._shift is not None:
                body = self._shift(bytes(body))
            if body:
                self._response.put_nowait(bytes(body))
            if not message.get("more_body", False):
                self._response.put_nowait(b"")

    # ------------------------------------------------------------------ the invoker's side

    async def response(self) -> tuple[int, list[tuple[str, str]]]:
        return await self._start

    def send(self, data: bytes) -> None:
        if not self._ended:
            self._request.put_nowait(data)

    def end(self) -> None:
        if not self._ended:
            self._ended = True
            self._request.put_nowait(None)

    async def receive(self) -> bytes:
        return await self._response.get()

    def reset(self, error_code: int = 8) -> None:
        self._disconnected.set()
        self._request.put_nowait(_DISCONNECT)
        self._task.cancel()


class AsgiEndpoints:
    """Apps by name; `request` opens a stream to the app a URL names."""

    def __init__(self, clock_offset_ms: Callable[[], int] | None = None) -> None:
        self._clock_offset_ms = clock_offset_ms
        self._apps: dict[str, ASGIApp] = {}
        self._tg: asyncio.TaskGroup | None = None

    def bind(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg

    def add(self, name: str, app: ASGIApp) -> str:
        """Register `app`; returns the deployment URI that reaches it."""
        self._apps[name] = app
        return f"http://{name}{HOST_SUFFIX}/"

    async def request(
        self, url: str, method: str, headers: list[tuple[str, str]], *, end_stream: bool = False
    ) -> AsgiStream:
        parts = urlsplit(url)
        host = parts.hostname or ""
        app = self._apps.get(host.removesuffix(HOST_SUFFIX))
        if app is None or not host.endswith(HOST_SUFFIX):
            raise EndpointError(f"no in-process app at {url}")
        assert self._tg is not None, "endpoints not bound to a task group"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "2",
            "method": method,
            "scheme": "http",
            "path": parts.path,
            "raw_path": parts.path.encode(),
            "query_string": parts.query.encode(),
            "root_path": "",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers],
            "server": (host, 80),
            "client": ("127.0.0.1", 0),
        }
        shift = None
        if self._clock_offset_ms is not None and parts.path.startswith("/invoke/"):
            shift = ClockShift(self._clock_offset_ms)
        return AsgiStream(app, scope, self._tg, end_stream, shift)

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            self._apps.clear()
