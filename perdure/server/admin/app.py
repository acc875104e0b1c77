"""The admin API (Starlette, kept thin): deployments, services, health, version, OpenAPI, with
Restate 1.7.12's paths, status codes and body shapes. `/v2`..`/v4` prefixes route to the same
handlers (v2 keeps its older defaults); `/v1` is refused as Restate refuses it."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from perdure.protocol.ids import b62decode, is_deployment_id
from perdure.server.admin.declared_schedules import DeclarationError, ScheduleDeclarations, declared_schedules
from perdure.server.admin.discovery_client import CLUSTER_HEADERS, DiscoveryError
from perdure.server.admin.discovery_client import discover as _discover
from perdure.server.admin.openapi import admin_openapi
from perdure.server.admin.render import (
    deployment_detail,
    deployment_summary,
    handler_json,
    registration_json,
    service_json,
)
from perdure.server.invoker.h2client import H2Client
from perdure.server.registry import Registry, RegistryError, ServiceInfo
from perdure.server.runtime import Unavailable
from perdure.server.units import DurationError, parse_duration_ms

if TYPE_CHECKING:  # signing pulls in cryptography and PyJWT; imported only when configured
    from perdure.server.invoker.identity import RequestSigner

ADMIN_API_MIN = 2
ADMIN_API_MAX = 4
API_VERSION_KEY = "perdure.admin_api_version"
FEATURES = (
    "protocol_v7",
    "scoped_virtual_objects",
    "vqueues_migration_skip_completed",
    "scoped_promise_table_migration",
    "preflight_invocation_termination_retention",
    "vqueue_obsolete_cleanup",
    "kafka_scope",
    "vqueues_async_refill",
    "vqueues",
    "scoped_state_table_migration",
    "invoker_yield",
    "unique_random_seeds",
)
_REGISTER_SHAPE_ERROR = (
    "Failed to deserialize the JSON body into the target type: data did not match "
    "any variant of untagged enum RegisterDeploymentRequest"
)
_FRIENDLY_ERROR = (
    'failed to parse input in the "friendly" duration format: expected duration to start '
    "with a unit value (a decimal integer) after an optional sign, but no integer was found"
)
_DURATION_FIELDS = {
    "idempotency_retention": "idempotency_retention_ms",
    "workflow_completion_retention": "workflow_completion_retention_ms",
    "journal_retention": "journal_retention_ms",
    "inactivity_timeout": "inactivity_timeout_ms",
    "abort_timeout": "abort_timeout_ms",
}


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


def admin_error(status: int, message: str, code: str | None = None) -> Response:
    return json_response({"message": message, "restate_code": code}, status)


def text_error(status: int, message: str) -> Response:
    return PlainTextResponse(message, status_code=status)


class _BadRequest(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


class _VersionPrefix:
    """Strips `/v2`..`/v4` (recording the version in the scope); refuses `/v1`; 404 for others."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            head, _, rest = path[1:].partition("/")
            if len(head) >= 2 and head[0] == "v" and head[1:].isdigit():
                version = int(head[1:])
                if version < ADMIN_API_MIN:
                    await text_error(
                        400,
                        f"Unsupported Admin API version V{version}. This server "
                        f"supports versions between V{ADMIN_API_MIN} and V{ADMIN_API_MAX}.",
                    )(scope, receive, send)
                    return
                if version > ADMIN_API_MAX:
                    await Response(status_code=404)(scope, receive, send)
                    return
                scope = dict(scope)
                scope["path"] = "/" + rest
                scope[API_VERSION_KEY] = version
        await self._app(scope, receive, send)


def _api_version(request: Request) -> int | None:
    return request.scope.get(API_VERSION_KEY)


async def _json_body(request: Request) -> Any:
    """The request's JSON, or a `_BadRequest` with Restate's 415/400 text."""
    ctype = request.headers.get("content-type", "")
    if ctype.split(";", 1)[0].strip().lower() != "application/json":
        raise _BadRequest(text_error(415, "Expected request with `Content-Type: application/json`"))
    raw = await request.body()
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        msg = "expected value" if e.msg == "Expecting value" else e.msg[:1].lower() + e.msg[1:]
        raise _BadRequest(
            text_error(
                400, f"Failed to parse the request body as JSON: {msg} at line {e.lineno} column {e.colno}"
            )
        ) from None
    except UnicodeDecodeError as e:
        raise _BadRequest(text_error(400, f"Failed to parse the request body as JSON: {e}")) from None


def _check_deployment_id(value: str) -> None:
    if not is_deployment_id(value):
        raise _BadRequest(
            text_error(400, f"Invalid URL: Cannot parse `deployment` with value `{value}`: bad format")
        )
    if b62decode(value[4:]) >= 1 << 128:
        raise _BadRequest(
            text_error(
                400, f"Invalid URL: Cannot parse `deployment` with value `{value}`: base62 decode error"
            )
        )


def _is_uri(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    scheme, sep, rest = value.partition("://")
    return bool(sep) and scheme in ("http", "https") and bool(rest.split("/", 1)[0])


def _headers_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise _BadRequest(text_error(422, _REGISTER_SHAPE_ERROR))
    return value


def _service_changes(body: Any) -> dict[str, Any]:
    prefix = "Failed to deserialize the JSON body into the target type: "
    if not isinstance(body, dict):
        raise _BadRequest(text_error(422, f"{prefix}invalid type: expected struct ModifyServiceRequest"))
    changes: dict[str, Any] = {}
    public = body.get("public")
    if public is not None:
        if not isinstance(public, bool):
            raise _BadRequest(
                text_error(422, f"{prefix}public: invalid type: {json.dumps(public)}, expected a boolean")
            )
        changes["public"] = public
    for key, attr in _DURATION_FIELDS.items():
        value = body.get(key)
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise DurationError("not a string")
            changes[attr] = parse_duration_ms(value)
        except DurationError:
            raise _BadRequest(text_error(422, f"{prefix}{key}: {_FRIENDLY_ERROR}")) from None
    return changes


def create_admin_app(
    registry: Registry,
    client: H2Client,
    *,
    version: str,
    ingress_endpoint: str,
    extra_routes: Sequence[BaseRoute] = (),
    server_headers: Mapping[str, str] = CLUSTER_HEADERS,
    signer: RequestSigner | None = None,
    schedules: ScheduleDeclarations | None = None,
) -> ASGIApp:
    """The admin ASGI app over `registry`; discovery goes through `client`, with the server's
    headers (and signature) on every request. `schedules` applies the schedules a registered
    manifest declares (docs/schedules.md)."""
    discover = functools.partial(_discover, server_headers=server_headers, signer=signer)

    async def health(_: Request) -> Response:
        return Response(status_code=200)

    async def get_version(_: Request) -> Response:
        return json_response(
            {
                "version": version,
                "min_admin_api_version": ADMIN_API_MIN,
                "max_admin_api_version": ADMIN_API_MAX,
                "ingress_endpoint": ingress_endpoint,
                "features": dict.fromkeys(FEATURES, False),
            }
        )

    async def openapi(_: Request) -> Response:
        return json_response(admin_openapi(version))

    async def post_deployment(request: Request) -> Response:
        body = await _json_body(request)
        if not isinstance(body, dict) or not _is_uri(body.get("uri")):
            if isinstance(body, dict) and "arn" in body:
                return admin_error(400, "Lambda deployments are not supported by this server")
            return text_error(422, _REGISTER_SHAPE_ERROR)
        api = _api_version(request)
        headers = _headers_map(body.get("additional_headers"))
        force = body.get("force")
        force = (api == 2) if force is None else bool(force)
        use_http_11 = bool(body.get("use_http_11") or False)
        uri: str = body["uri"]
        dry_run = bool(body.get("dry_run") or False)
        try:
            manifest, sdk = await discover(client, uri, headers, use_http_11=use_http_11)
            declared = declared_schedules(manifest.services)
            result = await registry.register(
                uri,
                manifest,
                sdk_version=sdk,
                additional_headers=headers,
                use_http_11=use_http_11,
                force=force,
                breaking=bool(body.get("breaking") or False),
                dry_run=dry_run,
                metadata=body.get("metadata") or {},
            )
            if schedules is not None and not dry_run:
                await schedules.apply(declared)
        except (DiscoveryError, RegistryError) as e:
            return admin_error(e.status, e.message, e.code)
        except DeclarationError as e:
            return admin_error(400, str(e))
        except Unavailable as e:
            return admin_error(503, f"registered, but its declared schedules are not applied yet: {e}")
        if api == 2 and not result.created and body.get("force") is False:
            return admin_error(409, f"deployment '{result.deployment.id}' already exists")
        return json_response(
            registration_json(result.deployment, result.services),
            201 if result.created else 200,
            {"location": f"deployments/{result.deployment.id}"},
        )

    async def list_deployments(_: Request) -> Response:
        return json_response({"deployments": [deployment_summary(d) for d in registry.deployments()]})

    async def get_deployment(request: Request) -> Response:
        dep_id = request.path_params["id"]
        _check_deployment_id(dep_id)
        dep = registry.deployment(dep_id)
        if dep is None:
            return admin_error(404, f"The requested deployment '{dep_id}' does not exist")
        return json_response(deployment_detail(dep, registry))

    async def delete_deployment(request: Request) -> Response:
        dep_id = request.path_params["id"]
        _check_deployment_id(dep_id)
        if request.query_params.get("force", "false").lower() != "true":
            return Response(status_code=501)
        try:
            await registry.remove_deployment(dep_id)
        except RegistryError as e:
            return admin_error(e.status, e.message, e.code)
        return Response(status_code=202)

    async def patch_deployment(request: Request) -> Response:
        dep_id = request.path_params["id"]
        _check_deployment_id(dep_id)
        body = await _json_body(request)
        if not isinstance(body, dict) or ("uri" in body and not _is_uri(body["uri"])):
            return text_error(
                422,
                "Failed to deserialize the JSON body into the target type: invalid UpdateDeploymentRequest",
            )
        current = registry.deployment(dep_id)
        if current is None:
            return admin_error(404, f"not found in the schema registry: {dep_id}")
        headers = None if body.get("additional_headers") is None else _headers_map(body["additional_headers"])
        use_http_11 = body.get("use_http_11")
        dry_run = bool(body.get("dry_run") or False)
        try:
            manifest, sdk = None, current.sdk_version
            if body.get("overwrite"):
                http_11 = current.http_version == "HTTP/1.1" if use_http_11 is None else bool(use_http_11)
                manifest, sdk = await discover(
                    client,
                    body.get("uri") or current.uri,
                    current.additional_headers if headers is None else headers,
                    use_http_11=http_11,
                )
                declared = declared_schedules(manifest.services)
            dep = await registry.update_deployment(
                dep_id,
                uri=body.get("uri"),
                additional_headers=headers,
                use_http_11=None if use_http_11 is None else bool(use_http_11),
                manifest=manifest,
                sdk_version=sdk,
                dry_run=dry_run,
            )
            if manifest is not None and schedules is not None and not dry_run:
                await schedules.apply(declared)
        except (DiscoveryError, RegistryError) as e:
            return admin_error(e.status, e.message, e.code)
        except DeclarationError as e:
            return admin_error(400, str(e))
        except Unavailable as e:
            return admin_error(503, f"updated, but its declared schedules are not applied yet: {e}")
        return json_response(deployment_detail(dep, registry))

    def is_rr(svc: ServiceInfo) -> bool:
        dep = registry.deployment(svc.deployment_id)
        return dep is not None and dep.protocol_mode == "REQUEST_RESPONSE"

    async def list_services(_: Request) -> Response:
        return json_response(
            {"services": [service_json(s, request_response=is_rr(s)) for s in registry.services()]}
        )

    async def get_service(request: Request) -> Response:
        name = request.path_params["name"]
        svc = registry.service(name)
        if svc is None:
            return admin_error(404, f"The requested service '{name}' does not exist")
        return json_response(service_json(svc, request_response=is_rr(svc)))

    async def patch_service(request: Request) -> Response:
        name = request.path_params["name"]
        changes = _service_changes(await _json_body(request))
        try:
            svc = await registry.patch_service(name, changes)
        except RegistryError as e:
            return admin_error(e.status, e.message, e.code)
        return json_response(service_json(svc, request_response=is_rr(svc)))

    async def list_handlers(request: Request) -> Response:
        name = request.path_params["name"]
        svc = registry.service(name)
        if svc is None:
            return admin_error(404, f"The requested service '{name}' does not exist")
        return json_response(
            {"handlers": [handler_json(h, request_response=is_rr(svc)) for h in svc.handlers.values()]}
        )

    async def get_handler(request: Request) -> Response:
        name, handler = request.path_params["name"], request.path_params["handler"]
        svc = registry.service(name)
        info = svc.handlers.get(handler) if svc is not None else None
        if info is None:
            return admin_error(404, f"The requested handler '{handler}' on service '{name}' does not exist")
        assert svc is not None
        return json_response(handler_json(info, request_response=is_rr(svc)))

    async def bad_request(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, _BadRequest)
        return exc.response

    routes: list[BaseRoute] = [
        Route("/health", health, methods=["GET"]),
        Route("/version", get_version, methods=["GET"]),
        Route("/openapi", openapi, methods=["GET"]),
        Route("/deployments", post_deployment, methods=["POST"]),
        Route("/deployments", list_deployments, methods=["GET"]),
        Route("/deployments/{id}", get_deployment, methods=["GET"]),
        Route("/deployments/{id}", delete_deployment, methods=["DELETE"]),
        Route("/deployments/{id}", patch_deployment, methods=["PATCH"]),
        Route("/services", list_services, methods=["GET"]),
        Route("/services/{name}", get_service, methods=["GET"]),
        Route("/services/{name}", patch_service, methods=["PATCH"]),
        Route("/services/{name}/handlers", list_handlers, methods=["GET"]),
        Route("/services/{name}/handlers/{handler}", get_handler, methods=["GET"]),
        *extra_routes,
    ]
    return _VersionPrefix(Starlette(routes=routes, exception_handlers={_BadRequest: bad_request}))
