"""The ingress: a thin raw-ASGI app (no framework on the hot path) that turns
HTTP requests into processor commands and replies into responses, with
Restate's routes, status codes and error bodies."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote, unquote_to_bytes

import orjson

from perdure.protocol.ids import IdError, InvocationId, parse_awakeable_id
from perdure.server.processor.commands import (
    Attach,
    CompleteAwakeable,
    Invoke,
    InvokeRequest,
)
from perdure.server.processor.effects import Reply
from perdure.server.processor.identity import idempotent_id, workflow_id
from perdure.server.processor.model import TIME_MS_MAX, Failure, Target
from perdure.server.processor.schema import SERVICE_TY, handler_kind
from perdure.server.registry import Registry
from perdure.server.runtime import Abandoned, Runtime, Unavailable
from perdure.server.telemetry.hub import Telemetry
from perdure.server.units import DurationError, parse_duration_ms

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

BAD_PATH = "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
SKIPPED_HEADERS = frozenset((b"host", b"connection", b"transfer-encoding", b"idempotency-key", b"keep-alive"))
VARY = (b"vary", b"origin, access-control-request-method, access-control-request-headers")


class IngressError(Exception):
    def __init__(self, status: int, message: str, invocation_id: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.invocation_id = invocation_id


def format_expires(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+00:00"


def format_rfc3339(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000000Z"


class Ingress:
    """ASGI application of the ingress port."""

    def __init__(
        self,
        registry: Registry,
        runtime: Runtime,
        *,
        request_size_max: int,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._registry = registry
        self._runtime = runtime
        self._size_max = request_size_max
        self._telemetry = telemetry

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if self._telemetry is not None:
            self._telemetry.ingress_admitted()
        origin = _header(scope, b"origin")
        try:
            if scope["method"] == "OPTIONS":
                await self._preflight(scope, send, origin)
                return
            await self._route(scope, receive, send, origin)
        except IngressError as exc:
            await _send_error(send, exc.status, exc.message, "ingress", exc.invocation_id, origin)
        except Unavailable as exc:
            await _send_error(send, 503, str(exc), "ingress", None, origin)
        except Abandoned:
            return  # the client went away; the invocation goes on

    async def _route(self, scope: Scope, receive: Receive, send: Send, origin: bytes | None) -> None:
        raw_path = _raw_path(scope)
        # Segments stay percent-encoded: only keys are decoded (once), service and
        # handler names are matched literally, as Restate does.
        parts = raw_path.strip("/").split("/") if raw_path.strip("/") else []
        method = scope["method"]
        if parts and parts[0] == "restate":
            await self._builtin(parts[1:], scope, receive, send, origin)
            return
        if not parts:
            raise IngressError(400, f"bad path: {raw_path}")
        if method not in ("POST", "GET"):
            raise IngressError(405, "method not allowed")
        await self._invoke(parts, scope, receive, send, origin)

    # ------------------------------------------------------------------ invoking handlers

    def _target(self, parts: list[str]) -> tuple[Target, Any, Any, bool]:
        svc = self._registry.service(parts[0])
        if svc is None:
            raise IngressError(
                404, f"service '{parts[0]}' not found, make sure to register the service before calling it."
            )
        keyed = svc.ty != "SERVICE"
        rest = parts[1:]
        is_send = False
        expected = 2 if keyed else 1
        if len(rest) == expected + 1 and rest[-1] == "send":
            is_send = True
            rest = rest[:-1]
        if len(rest) != expected:
            raise IngressError(400, BAD_PATH)
        key = decode_key(rest[0]) if keyed else None
        handler_name = rest[-1]
        handler = svc.handlers.get(handler_name)
        if handler is None:
            raise IngressError(
                404,
                f"the service '{svc.name}' exists, but the handler '{handler_name}' was not found, "
                "check that the handler exists in the latest registered service version.",
            )
        if not svc.public or not handler.public:
            raise IngressError(400, "the invoked service is not public")
        target = Target(svc.name, handler_name, key, SERVICE_TY[svc.ty], handler_kind(svc, handler))
        return target, svc, handler, is_send

    async def _invoke(
        self, parts: list[str], scope: Scope, receive: Receive, send: Send, origin: bytes | None
    ) -> None:
        if parts[0] == "restate":
            parts = parts[1:]
        target, _svc, handler, is_send = self._target(parts)
        body = await self._read_body(scope, receive)
        ctype = _header(scope, b"content-type")
        problem = handler.validate_input(ctype.decode("latin-1") if ctype is not None else None, body)
        if problem is not None:
            raise IngressError(400, f"input validation error: {problem}")
        qs = scope.get("query_string", b"")
        query = parse_qs(qs.decode("latin-1"), keep_blank_values=True) if qs else {}
        execution_time_ms = None
        if "delay" in query:
            if not is_send:
                raise IngressError(400, "the delay query parameter is only allowed with /send")
            now_ms = int(time.time() * 1000)
            try:
                delay = parse_duration_ms(query["delay"][0])
                if now_ms + delay > TIME_MS_MAX:
                    raise DurationError("the delay ends after the year 9999")
            except DurationError as exc:
                raise IngressError(
                    400,
                    "bad delay query parameter, must be a ISO8601 duration: "
                    f'failed to parse input in the "friendly" duration format: {exc}',
                ) from None
            execution_time_ms = now_ms + delay
        ikey = _header(scope, b"idempotency-key")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k not in SKIPPED_HEADERS
        ]
        headers.append(("x-restate-ingress-path", scope["path"]))
        # Retentions are the handler's effective ones (its option, else the service's, else the default).
        wf_retention = handler.workflow_completion_retention_ms or handler.idempotency_retention_ms
        req = InvokeRequest(
            target=target,
            input=body,
            headers=tuple(headers),
            idempotency_key=ikey.decode("latin-1") if ikey else None,
            execution_time_ms=execution_time_ms,
            idempotency_retention_ms=handler.idempotency_retention_ms,
            workflow_retention_ms=wf_retention,
            journal_retention_ms=handler.journal_retention_ms,
        )
        mode = "send" if is_send else "call"
        tel = self._telemetry
        if tel is None:
            reply = await self._call(req, mode, receive)
        else:
            t0 = time.perf_counter()
            trace = tel.ingress_begin(scope, target)
            if trace is not None:
                req = dataclasses.replace(req, trace_parent=trace.traceparent)
            reply_id: str | None = None
            try:
                reply = await self._call(req, mode, receive)
                reply_id = reply.invocation_id
            finally:
                tel.ingress_completed(target.service, mode, time.perf_counter() - t0, trace, reply_id)
        await self._respond(send, reply, handler, origin)

    async def _call(self, req: InvokeRequest, mode: str, receive: Receive) -> Reply:
        until = _disconnected(receive) if mode == "call" else None
        return await self._runtime.call(lambda token: Invoke(req, token, mode), until=until)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._size_max:
            raise IngressError(413, f"request body is larger than the limit of {self._size_max} bytes")
        chunks = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise asyncio.CancelledError
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self._size_max:
                raise IngressError(413, f"request body is larger than the limit of {self._size_max} bytes")
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)

    async def _respond(self, send: Send, reply: Reply, handler: Any, origin: bytes | None) -> None:
        if reply.kind == "accepted":
            payload: dict[str, Any] = {"invocationId": reply.invocation_id}
            if reply.execution_time_ms is not None:
                payload["executionTime"] = format_rfc3339(reply.execution_time_ms)
            payload["status"] = reply.status
            hdrs = [(b"content-type", b"application/json"), (b"x-restate-id", reply.invocation_id.encode())]  # type: ignore[union-attr]
            await _send(send, 202, hdrs, orjson.dumps(payload), origin)
            return
        if reply.kind == "error":
            await _send_error(send, reply.code, reply.message, reply.source, reply.invocation_id, origin)
            return
        await self._send_outcome(send, reply, handler, origin)

    async def _send_outcome(self, send: Send, reply: Reply, handler: Any, origin: bytes | None) -> None:
        outcome = reply.outcome
        assert outcome is not None
        extra: list[tuple[bytes, bytes]] = []
        if reply.invocation_id:
            extra.append((b"x-restate-id", reply.invocation_id.encode()))
        if reply.expires_at_ms is not None:
            extra.append((b"idempotency-expires", format_expires(reply.expires_at_ms).encode()))
        if outcome.failure is not None:
            await _send_error(
                send, outcome.failure.code, outcome.failure.message, "invocation", None, origin, extra
            )
            return
        value = outcome.value or b""
        ctype = getattr(handler, "output_content_type", None) if handler is not None else "application/json"
        if ctype and (value or getattr(handler, "set_content_type_if_empty", False)):
            extra.append((b"content-type", ctype.encode()))
        await _send(send, 200, extra, value, origin)

    # ------------------------------------------------------------------ /restate/...

    async def _builtin(
        self, parts: list[str], scope: Scope, receive: Receive, send: Send, origin: bytes | None
    ) -> None:
        method = scope["method"]
        head = parts[0] if parts else ""
        if head in ("call", "send") and len(parts) >= 3:
            if method not in ("POST", "GET"):
                raise IngressError(405, "method not allowed")
            await self._invoke(parts[1:] + (["send"] if head == "send" else []), scope, receive, send, origin)
            return
        if head == "health" and len(parts) == 1:
            names = sorted(s.name for s in self._registry.services())
            await _send(
                send, 200, [(b"content-type", b"application/json")], orjson.dumps({"services": names}), origin
            )
            return
        if head in ("awakeables", "a") and len(parts) == 3 and parts[2] in ("resolve", "reject"):
            if method != "POST":
                raise IngressError(405, "method not allowed")
            await self._awakeable(parts[1], parts[2], scope, receive, send, origin)
            return
        lookup = self._lookup(parts)
        if lookup is None:
            raise IngressError(404, "not found")
        raw_id, wait, handler = lookup
        if method != "GET":
            raise IngressError(405, "method not allowed")
        until = _disconnected(receive) if wait else None
        reply = await self._runtime.call(lambda token: Attach(raw_id, token, wait), until=until)
        await self._respond(send, reply, handler, origin)

    def _lookup(self, parts: list[str]) -> tuple[bytes, bool, Any] | None:
        """Attach/output paths: by invocation id, idempotency key, or workflow key."""
        if len(parts) == 2 and parts[0] in ("attach", "output"):
            return self._by_id(parts[1]), parts[0] == "attach", None
        if len(parts) < 3 or parts[-1] not in ("attach", "output"):
            return None
        wait = parts[-1] == "attach"
        if parts[0] == "invocation" and len(parts) == 3:
            return self._by_id(parts[1]), wait, None
        if parts[0] == "invocation" and len(parts) in (5, 6):
            svc_name = parts[1]
            svc = self._registry.service(svc_name)
            if svc is None:
                raise IngressError(404, "invocation not found")
            key = decode_key(parts[2]) if len(parts) == 6 else None
            handler_name, ikey = parts[-3], decode_key(parts[-2])
            return idempotent_id(svc_name, key, handler_name, ikey).raw, wait, svc.handlers.get(handler_name)
        if parts[0] == "workflow" and len(parts) == 4:
            svc = self._registry.service(parts[1])
            handler = None
            if svc is not None:
                handler = next((h for h in svc.handlers.values() if handler_kind(svc, h) == "workflow"), None)
            return workflow_id(parts[1], decode_key(parts[2])).raw, wait, handler
        return None

    def _by_id(self, text: str) -> bytes:
        try:
            return InvocationId.parse(text).raw
        except IdError as exc:
            raise IngressError(400, f"bad invocation id '{text}': {exc}") from None

    async def _awakeable(
        self, aid: str, action: str, scope: Scope, receive: Receive, send: Send, origin: bytes | None
    ) -> None:
        try:
            ref = parse_awakeable_id(aid)
        except (IdError, ValueError) as exc:
            raise IngressError(400, f"bad awakeable id '{aid}': {exc}") from None
        body = await self._read_body(scope, receive)
        if action == "resolve":
            cmd_value, failure = body, None
        else:
            cmd_value, failure = None, Failure(500, body.decode("utf-8", "replace"))
        await self._runtime.call(lambda token: CompleteAwakeable(ref, cmd_value, failure, token))
        await _send(send, 202, [], b"", origin)

    async def _preflight(self, scope: Scope, send: Send, origin: bytes | None) -> None:
        hdrs: list[tuple[bytes, bytes]] = []
        method = _header(scope, b"access-control-request-method")
        if method:
            hdrs.append((b"access-control-allow-methods", method))
        req_headers = _header(scope, b"access-control-request-headers")
        if req_headers:
            hdrs.append((b"access-control-allow-headers", req_headers))
        await _send(send, 200, hdrs, b"", origin)


async def _disconnected(receive: Receive) -> None:
    """Returns when the client disconnects (the request body was read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _raw_path(scope: Scope) -> str:
    raw = scope.get("raw_path")
    if raw is None:
        return quote(scope["path"])
    return bytes(raw).split(b"?", 1)[0].decode("latin-1")


def decode_key(segment: str) -> str:
    """A key segment of the path, percent-decoded once; it must be UTF-8."""
    try:
        return unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IngressError(400, f"bad path, cannot decode key: {exc}") from None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


async def _send(
    send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes, origin: bytes | None
) -> None:
    headers = [
        *headers,
        VARY,
        (b"access-control-allow-credentials", b"true"),
        (b"content-length", str(len(body)).encode()),
    ]
    if origin is not None:
        headers.append((b"access-control-allow-origin", origin))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(
    send: Send,
    status: int,
    message: str,
    source: str,
    invocation_id: str | None,
    origin: bytes | None,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    http_status = status if 100 <= status <= 599 else 500
    body = orjson.dumps({"code": status, "message": message, "source": source})
    hdrs = list(extra or [])
    hdrs += [(b"content-type", b"application/json"), (b"x-restate-error-source", source.encode())]
    if invocation_id and not any(k == b"x-restate-id" for k, _ in hdrs):
        hdrs.append((b"x-restate-id", invocation_id.encode()))
    await _send(send, http_status, hdrs, body, origin)


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
