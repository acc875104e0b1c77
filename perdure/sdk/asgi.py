"""The ASGI application an endpoint serves (with hypercorn, over h2c for bidi
streaming or HTTP/1.1 for request-response): `GET /discover`, `GET /health`,
`POST /invoke/{service}/{handler}`."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from perdure.protocol.errors import ProtocolError
from perdure.sdk.context import context_class
from perdure.sdk.discovery import MANIFEST_CONTENT_TYPE, manifest, negotiate_manifest_version
from perdure.sdk.machine import PROTOCOL_VERSIONS, Machine
from perdure.sdk.service import Service, VirtualObject, Workflow, _Definition
from perdure.sdk.session import Receive, Send, Session
from perdure.sdk.version import SERVER_HEADER

if TYPE_CHECKING:
    from perdure.sdk.identity import IdentityVerifier

logger = logging.getLogger("perdure.sdk")

ProtocolMode = Literal["bidi", "request_response"]
INVOCATION_CONTENT_TYPE = "application/vnd.restate.invocation.v"
_SERVER = (b"x-restate-server", SERVER_HEADER.encode())
_CONTENT_TYPES = {v: f"{INVOCATION_CONTENT_TYPE}{v}".encode() for v in PROTOCOL_VERSIONS}


class Endpoint:
    """An ASGI app hosting services. Call it as `app(scope, receive, send)`."""

    def __init__(
        self,
        services: Iterable[_Definition],
        protocol: ProtocolMode | None = None,
        identity_keys: Iterable[str] | None = None,
    ) -> None:
        keys = list(identity_keys or ())
        self._verifier: IdentityVerifier | None = None
        if keys:  # imported only when used: it pulls in cryptography and PyJWT
            from perdure.sdk.identity import IdentityVerifier

            self._verifier = IdentityVerifier(keys)
        self.services: dict[str, _Definition] = {}
        for s in services:
            if not isinstance(s, Service | VirtualObject | Workflow):
                raise ValueError(f"Invalid service type {s!r}")
            if s.name in self.services:
                raise ValueError(f"Service {s.name} already exists")
            self.services[s.name] = s
        self.protocol = protocol

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind != "http":
            return
        parts = scope["path"].rsplit("/", 3)
        if parts[-1] != "health" and not await self._identity_ok(scope, send):
            return
        if len(parts) == 4 and parts[1] == "invoke":
            await self._invoke(scope, receive, send, parts[2], parts[3])
        elif parts[-1] == "discover":
            await self._discover(scope, send)
        elif parts[-1] == "health":
            await _respond(send, 200, b'{"status":"ok"}', b"application/json")
        else:
            await _respond(send, 404, b"not found")

    async def _identity_ok(self, scope: dict[str, Any], send: Send) -> bool:
        """True if no keys are configured or the request is signed by one (else 401 sent)."""
        if self._verifier is None:
            return True
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        from perdure.sdk.identity import IdentityError

        try:
            self._verifier.verify(headers, scope["path"])
        except IdentityError as e:
            logger.warning("refused a request to %s: %s", scope["path"], e)
            await _respond(send, 401, f"Unauthorized: {e}".encode())
            return False
        return True

    async def _discover(self, scope: dict[str, Any], send: Send) -> None:
        version = negotiate_manifest_version(_header(scope, b"accept"))
        if version is None:
            await _respond(send, 415, b"unsupported discovery version")
            return
        mode = self.protocol or ("request_response" if scope.get("http_version") == "1.1" else "bidi")
        body = json.dumps(manifest(self.services.values(), mode, version)).encode()
        await _respond(send, 200, body, MANIFEST_CONTENT_TYPE.format(version).encode())

    async def _invoke(self, scope: dict[str, Any], receive: Receive, send: Send, svc: str, name: str) -> None:
        service = self.services.get(svc)
        handler = service.handlers.get(name) if service is not None else None
        if service is None or handler is None:
            await _respond(send, 404, f"{svc}/{name} not found".encode())
            return
        version = _protocol_version(_header(scope, b"content-type"))
        if version is None:
            await _respond(send, 415, b"unsupported invocation protocol version")
            return
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", _CONTENT_TYPES[version]), _SERVER],
            }
        )
        session = Session(Machine(version), receive, send)
        try:
            await session.read_until_ready()
        except ProtocolError as e:
            logger.warning("invocation %s/%s: %s", svc, name, e)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        async with asyncio.TaskGroup() as tg:
            reader = tg.create_task(session.read_loop())
            ctx = context_class(service.service_tag.kind, handler.kind)(session, tg, headers)
            await session.execute(handler, ctx, tg)
            await session.close(reader)


def app(
    services: Iterable[_Definition],
    protocol: ProtocolMode | None = None,
    identity_keys: list[str] | None = None,
    journal_value_codec: Any = None,
) -> Endpoint:
    """An ASGI application hosting `services`. `protocol` forces bidi streaming or
    request-response; by default it follows the HTTP version of discovery. With `identity_keys`
    (`publickeyv1_...`), only requests signed by one of those keys are served (401 otherwise)."""
    if journal_value_codec is not None:
        raise NotImplementedError("journal value codecs are not supported yet")
    return Endpoint(services, protocol, identity_keys)


def _protocol_version(content_type: str | None) -> int | None:
    if content_type is None or not content_type.startswith(INVOCATION_CONTENT_TYPE):
        return None
    try:
        version = int(content_type[len(INVOCATION_CONTENT_TYPE) :])
    except ValueError:
        return None
    return version if version in PROTOCOL_VERSIONS else None


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


async def _respond(send: Send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), _SERVER],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
