"""Optional bearer-token access control for the ingress and the admin API (ASGI middleware).

Restate's open-source server has none; Perdure refuses a request without
`authorization: Bearer <token>` with 401 and a body that says what is missing. Tokens are
compared in constant time. Health checks (`/health`, `/restate/health`) and CORS preflights stay
open so load balancers and browsers keep working; everything else needs the token.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.types import Receive, Scope, Send

OPEN_PATHS = frozenset(("/health", "/restate/health"))

# The JSON body of a refusal for one listener: (status, message) -> bytes.
Body = Callable[[int, str], bytes]
App = Callable[[Any, Any, Any], Awaitable[None]]  # any ASGI app (the ingress has its own types)


def ingress_body(status: int, message: str) -> bytes:
    return orjson.dumps({"code": status, "message": message, "source": "ingress"})


def admin_body(status: int, message: str) -> bytes:
    return orjson.dumps({"message": message, "restate_code": None})


class BearerAuth:
    """Passes a request on only if it carries the configured bearer token."""

    def __init__(self, app: App, token: str, body: Body, what: str, open_prefix: str | None = None) -> None:
        assert token, "an empty token would let everyone in"
        self._app = app
        self._open_prefix = open_prefix
        self._expected = f"Bearer {token}".encode()
        self._body = body
        self._what = what

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._open(scope) or self._authorized(scope):
            await self._app(scope, receive, send)
            return
        given = any(k == b"authorization" for k, _ in scope["headers"])
        message = (
            f"the {self._what} token is wrong: send the configured token as 'authorization: Bearer <token>'"
            if given
            else f"the {self._what} requires a token: send 'authorization: Bearer <token>'"
        )
        body = self._body(401, message)
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="perdure"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _open(self, scope: Scope) -> bool:
        if self._open_prefix is not None and _static(scope, self._open_prefix):
            return True
        return scope["path"] in OPEN_PATHS or (
            scope["method"] == "OPTIONS"
            and any(k == b"access-control-request-method" for k, _ in scope["headers"])
        )

    def _authorized(self, scope: Scope) -> bool:
        for key, value in scope["headers"]:
            if key == b"authorization":
                # compare_digest takes the same time whatever prefix matches.
                return hmac.compare_digest(value, self._expected)
        return False


def _static(scope: Scope, prefix: str) -> bool:
    """A GET of the web UI's page or assets (not secret: the browser loads them before it can
    send a token; the UI then asks for it and sends it on every API request)."""
    path: str = scope["path"]
    return (
        scope["method"] in ("GET", "HEAD")
        and (path == prefix or path.startswith(prefix + "/"))
        and not path.startswith(prefix + "/api/")
    )


def protect(app: App, token: str | None, body: Body, what: str, open_prefix: str | None = None) -> App:
    """`app` behind a token check, or `app` itself when no token is configured. GETs under
    `open_prefix` (the web UI's assets, not its `/api/`) pass without a token."""
    return app if not token else BearerAuth(app, token, body, what, open_prefix)
