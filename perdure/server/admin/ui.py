"""The web UI on the admin port: static assets shipped in the package, an SPA fallback, and
a door to the ingress for the UI's "invoke" form.

- `/ui/assets/<file>`: the UI's ES modules and CSS (`perdure/server/admin/ui_assets/`), read
  once at start; `cache-control: no-cache` with an ETag, so an upgraded server is seen at once.
- `/ui/api/ingress/<path>`: the ingress ASGI app itself, in process, so the browser never has
  to leave the admin origin (no CORS, no second port) to call a handler.
- `/ui`, `/ui/` and any other `/ui/...` path: `index.html`, so a deep link such as
  `/ui/invocations/inv_1...` opens the page (the router in the browser picks the view).
The UI reads everything else from the admin API and `POST /query`, as Restate's does."""

from __future__ import annotations

import hashlib
import mimetypes
from dataclasses import dataclass
from importlib import resources

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Receive, Scope, Send

from perdure.server.auth import App

ASSETS_PACKAGE = "perdure.server.admin"
ASSETS_DIR = "ui_assets"
INGRESS_PREFIX = "/ui/api/ingress"
INGRESS_AUTH_HEADER = b"x-perdure-ingress-authorization"  # the invoke form's ingress token
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    media_type: str
    etag: str


def load_assets() -> dict[str, Asset]:
    """Every file of the assets directory, by file name."""
    out: dict[str, Asset] = {}
    root = resources.files(ASSETS_PACKAGE).joinpath(ASSETS_DIR)
    for item in root.iterdir():
        if not item.is_file() or item.name.startswith("."):
            continue
        body = item.read_bytes()
        suffix = "." + item.name.rsplit(".", 1)[-1]
        media = _TYPES.get(suffix) or mimetypes.guess_type(item.name)[0] or "application/octet-stream"
        out[item.name] = Asset(body, media, '"' + hashlib.sha256(body).hexdigest()[:20] + '"')
    assert "index.html" in out, "the UI assets must contain index.html"
    return out


def _serve(asset: Asset, request: Request) -> Response:
    headers = {"etag": asset.etag, "cache-control": "no-cache"}
    if request.headers.get("if-none-match") == asset.etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.media_type, headers=headers)


class _IngressDoor:
    """Calls the ingress app with the path below `/ui/api/ingress`."""

    def __init__(self, ingress: App) -> None:
        self._ingress = ingress

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"][len(INGRESS_PREFIX) :] or "/"
        headers = scope["headers"]
        ingress_auth = next((v for k, v in headers if k == INGRESS_AUTH_HEADER), None)
        if ingress_auth is not None:  # the ingress's own token, when it differs from the admin's
            headers = [(k, v) for k, v in headers if k not in (b"authorization", INGRESS_AUTH_HEADER)]
            headers.append((b"authorization", ingress_auth))
        inner = dict(scope, path=path, raw_path=path.encode(), root_path="", headers=headers)
        await self._ingress(inner, receive, send)


def ui_routes(ingress: App) -> list[BaseRoute]:
    assets = load_assets()
    index = assets["index.html"]

    async def asset(request: Request) -> Response:
        found = assets.get(request.path_params["name"])
        if found is None:
            return Response("no such UI asset", status_code=404, media_type="text/plain")
        return _serve(found, request)

    async def page(request: Request) -> Response:
        if request.path_params["path"].startswith("api/"):
            return Response("no such UI API route", status_code=404, media_type="text/plain")
        return _serve(index, request)

    async def to_slash(_: Request) -> Response:
        return RedirectResponse("/ui/", status_code=308)

    return [
        Route("/ui", to_slash, methods=["GET"]),
        Route("/ui/assets/{name}", asset, methods=["GET"]),
        Mount(INGRESS_PREFIX, app=_IngressDoor(ingress)),
        Route("/ui/{path:path}", page, methods=["GET"]),
    ]
