"""The admin API (Starlette): deployments, services, health, version, OpenAPI,
with Restate's paths, status codes and body shapes. Versioned prefixes
/v2../v4 route to the same handlers; /v1 is refused as Restate does."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from perdure.protocol.discovery import ManifestError
from perdure.protocol.ids import is_deployment_id
from perdure.server.admin.discovery import DiscoveryError, discover
from perdure.server.admin.render import deployment_detail, deployment_summary, handler_json, service_json
from perdure.server.ingress.durations import DurationError, parse_duration_ms
from perdure.server.invoker.h2client import H2Client
from perdure.server.registry import Registry

ADMIN_API_MIN = 2
ADMIN_API_MAX = 4


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def admin_error(status: int, message: str, code: str | None = None) -> Response:
    return json_response({"message": message, "restate_code": code}, status)


class _VersionPrefix:
    """Strips /v2../v4 prefixes; refuses /v1."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            parts = path.split("/", 2)
            if len(parts) >= 2 and len(parts[1]) == 2 and parts[1][0] == "v" and parts[1][1].isdigit():
                version = int(parts[1][1])
                if version < ADMIN_API_MIN or version > ADMIN_API_MAX:
                    resp = PlainTextResponse(
                        f"Unsupported Admin API version V{version}. Supported versions are "
                        f"V{ADMIN_API_MIN}..V{ADMIN_API_MAX}",
                        status_code=400,
                    )
                    await resp(scope, receive, send)
                    return
                scope = dict(scope)
                scope["path"] = "/" + (parts[2] if len(parts) > 2 else "")
        await self._app(scope, receive, send)


def create_admin_app(
    registry: Registry,
    client: H2Client,
    *,
    version: str,
    ingress_endpoint: str,
    extra_routes: Sequence[BaseRoute] = (),
) -> ASGIApp:
    register_lock = asyncio.Lock()

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def get_version(_: Request) -> Response:
        return json_response(
            {
                "version": version,
                "min_admin_api_version": ADMIN_API_MIN,
                "max_admin_api_version": ADMIN_API_MAX,
                "ingress_endpoint": ingress_endpoint,
                "features": {"protocol_v7": False, "vqueues": False},
            }
        )

    async def post_deployment(request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError as exc:
            return PlainTextResponse(f"Failed to parse the request body as JSON: {exc}", status_code=400)
        uri = body.get("uri") if isinstance(body, dict) else None
        if not isinstance(uri, str) or not uri.startswith(("http://", "https://")):
            return PlainTextResponse(
                "Failed to deserialize the JSON body into the target type: data did not match any variant of "
                "untagged enum RegisterDeploymentRequest",
                status_code=422,
            )
        headers = body.get("additional_headers") or {}
        force = bool(body.get("force") or False)
        dry_run = bool(body.get("dry_run") or False)
        use_http_11 = bool(body.get("use_http_11") or False)
        try:
            manifest, raw, sdk = await discover(client, uri, headers, use_http_11=use_http_11)
        except DiscoveryError as exc:
            return admin_error(exc.status, exc.message, exc.code)
        except ManifestError as exc:
            return admin_error(400, f"[META0014] bad service manifest: {exc}", "META0014")
        conflict = _type_conflicts(registry, manifest)
        if conflict is not None and not force:
            return admin_error(409, conflict, "META0006")
        async with register_lock:
            created, dep = await registry.register(
                uri,
                manifest,
                raw,
                sdk_version=sdk,
                additional_headers=headers,
                http_version="HTTP/1.1" if use_http_11 else "HTTP/2.0",
                force=force,
                dry_run=dry_run,
            )
        payload = {
            "id": dep.id,
            "services": [service_json(s, dep) for s in dep.services.values()],
            "min_protocol_version": dep.min_protocol_version,
            "max_protocol_version": dep.max_protocol_version,
            "sdk_version": dep.sdk_version,
        }
        return json_response(payload, 201 if created else 200, {"location": f"deployments/{dep.id}"})

    async def list_deployments(_: Request) -> Response:
        return json_response(
            {"deployments": [deployment_summary(d, registry) for d in registry.deployments()]}
        )

    async def get_deployment(request: Request) -> Response:
        dep_id = request.path_params["id"]
        dep = registry.deployment(dep_id)
        if dep is None:
            return admin_error(404, f"The requested deployment '{dep_id}' does not exist")
        return json_response(deployment_detail(dep, registry))

    async def delete_deployment(request: Request) -> Response:
        dep_id = request.path_params["id"]
        if not is_deployment_id(dep_id):
            return PlainTextResponse(
                f"Invalid URL: Cannot parse `deployment` with value `{dep_id}`: bad format", status_code=400
            )
        if request.query_params.get("force", "false").lower() != "true":
            return Response(status_code=501)
        if not await registry.remove(dep_id):
            return admin_error(404, f"not found in the schema registry: deployment with id '{dep_id}'")
        return Response(status_code=202)

    async def list_services(_: Request) -> Response:
        return json_response(
            {"services": [service_json(s, registry.deployment(s.deployment_id)) for s in registry.services()]}
        )

    async def get_service(request: Request) -> Response:
        name = request.path_params["name"]
        svc = registry.service(name)
        if svc is None:
            return admin_error(404, f"The requested service '{name}' does not exist")
        return json_response(service_json(svc, registry.deployment(svc.deployment_id)))

    async def patch_service(request: Request) -> Response:
        name = request.path_params["name"]
        if registry.service(name) is None:
            return admin_error(404, f"The requested service '{name}' does not exist")
        try:
            body = orjson.loads(await request.body())
            changes = _service_changes(body)
        except orjson.JSONDecodeError as exc:
            return PlainTextResponse(f"Failed to parse the request body as JSON: {exc}", status_code=400)
        except (DurationError, ValueError, TypeError) as exc:
            return PlainTextResponse(
                f"Failed to deserialize the JSON body into the target type: {exc}", status_code=422
            )
        svc = await registry.modify_service(name, changes)
        assert svc is not None
        return json_response(service_json(svc, registry.deployment(svc.deployment_id)))

    async def list_handlers(request: Request) -> Response:
        name = request.path_params["name"]
        svc = registry.service(name)
        if svc is None:
            return admin_error(404, f"The requested service '{name}' does not exist")
        return json_response({"handlers": [handler_json(h, svc) for h in svc.handlers.values()]})

    async def get_handler(request: Request) -> Response:
        name, hname = request.path_params["name"], request.path_params["handler"]
        svc = registry.service(name)
        if svc is None:
            return admin_error(404, f"The requested service '{name}' does not exist")
        h = svc.handlers.get(hname)
        if h is None:
            return admin_error(404, f"The requested handler '{hname}' on service '{name}' does not exist")
        return json_response(handler_json(h, svc))

    async def openapi(_: Request) -> Response:
        from perdure.server.admin.openapi import admin_openapi

        return json_response(admin_openapi(version))

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/version", get_version, methods=["GET"]),
        Route("/openapi", openapi, methods=["GET"]),
        Route("/deployments", post_deployment, methods=["POST"]),
        Route("/deployments", list_deployments, methods=["GET"]),
        Route("/deployments/{id}", get_deployment, methods=["GET"]),
        Route("/deployments/{id}", delete_deployment, methods=["DELETE"]),
        Route("/services", list_services, methods=["GET"]),
        Route("/services/{name}", get_service, methods=["GET"]),
        Route("/services/{name}", patch_service, methods=["PATCH"]),
        Route("/services/{name}/handlers", list_handlers, methods=["GET"]),
        Route("/services/{name}/handlers/{handler}", get_handler, methods=["GET"]),
        *extra_routes,
    ]
    return _VersionPrefix(Starlette(routes=routes))


def _type_conflicts(registry: Registry, manifest: Any) -> str | None:
    for sm in manifest.services:
        cur = registry.service(sm.name)
        if cur is not None and cur.ty != sm.ty:
            return (
                f"[META0006] bad service type change for '{sm.name}': {cur.ty} -> {sm.ty}; "
                "use force to override"
            )
    return None


_DURATION_FIELDS = {
    "idempotency_retention": "idempotency_retention_ms",
    "workflow_completion_retention": "workflow_completion_retention_ms",
    "journal_retention": "journal_retention_ms",
    "inactivity_timeout": "inactivity_timeout_ms",
    "abort_timeout": "abort_timeout_ms",
}


def _service_changes(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise TypeError("expected a JSON object")
    changes: dict[str, Any] = {}
    if "public" in body:
        if not isinstance(body["public"], bool):
            raise TypeError("public: expected a boolean")
        changes["public"] = body["public"]
    for key, attr in _DURATION_FIELDS.items():
        if body.get(key) is not None:
            try:
                changes[attr] = parse_duration_ms(str(body[key]))
            except DurationError as exc:
                raise DurationError(
                    f'{key}: failed to parse input in the "friendly" duration format: {exc}'
                ) from None
    return changes
