"""Admin routes for schedules (Perdure's; Restate has none): `GET /schedules`,
`GET|PUT|DELETE /schedules/{name}`, `PATCH /schedules/{name}/pause|resume`. See docs/schedules.md."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection
from typing import Any, NamedTuple

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.server.processor.commands import ChangeSchedule
from perdure.server.processor.schedules import Schedule, ScheduleError, validate
from perdure.server.registry import Registry
from perdure.server.runtime import Runtime, Unavailable
from perdure.server.units import DurationError, parse_duration_ms

NAME = re.compile(r"[a-zA-Z0-9_.\-]{1,200}")
_FIELDS = frozenset(("target", "body", "cron", "every", "timezone", "overlap", "catch_up_max", "paused"))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "restate_code": None}, status_code=status)


class ServiceShape(NamedTuple):
    """What parsing a schedule needs of its target service."""

    name: str
    ty: str  # SERVICE | VIRTUAL_OBJECT | WORKFLOW
    handlers: Collection[str]


ServiceLookup = Callable[[str], ServiceShape | None]


def registry_lookup(registry: Registry) -> ServiceLookup:
    """Targets among the registered services (their latest revisions)."""

    def lookup(name: str) -> ServiceShape | None:
        svc = registry.service(name)
        return None if svc is None else ServiceShape(svc.name, svc.ty, svc.handlers.keys())

    return lookup


def parse_schedule(name: str, body: Any, services: Registry | ServiceLookup) -> Schedule:
    """A schedule from its JSON body; ScheduleError (422) or LookupError (404) when it is wrong."""
    lookup = registry_lookup(services) if isinstance(services, Registry) else services
    if not isinstance(body, dict):
        raise ScheduleError("the body must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise ScheduleError(f"unknown fields: {', '.join(sorted(unknown))}")
    target = body.get("target")
    if not isinstance(target, str):
        raise ScheduleError("'target' must be 'Service/handler' or 'Object/key/handler'")
    parts = target.split("/")
    svc = lookup(parts[0])
    if svc is None:
        raise LookupError(f"service '{parts[0]}' not found")
    keyed = svc.ty != "SERVICE"
    if len(parts) != (3 if keyed else 2):
        raise ScheduleError(
            f"'target' of {svc.ty.lower()} '{svc.name}' must be "
            + ("'Object/key/handler'" if keyed else "'Service/handler'")
        )
    if parts[-1] not in svc.handlers:
        raise LookupError(f"handler '{parts[0]}/{parts[-1]}' not found")
    every = body.get("every")
    every_ms = None
    if every is not None:
        try:
            every_ms = parse_duration_ms(str(every))
        except DurationError as exc:
            raise ScheduleError(f"'every' is not a duration: {exc}") from None
    catch_up = body.get("catch_up_max", 1)
    if isinstance(catch_up, bool) or not isinstance(catch_up, int):
        raise ScheduleError("'catch_up_max' must be an integer")
    paused = body.get("paused", False)
    if not isinstance(paused, bool):
        raise ScheduleError("'paused' must be a boolean")
    cron = body.get("cron")
    if cron is not None and not isinstance(cron, str):
        raise ScheduleError("'cron' must be a string")
    return validate(
        Schedule(
            name=name,
            service=svc.name,
            handler=parts[-1],
            key=parts[1] if keyed else None,
            body=orjson.dumps(body.get("body")),
            cron=cron,
            every_ms=every_ms,
            timezone=str(body.get("timezone", "UTC")),
            overlap=str(body.get("overlap", "allow")),
            catch_up_max=catch_up,
            paused=paused,
        )
    )


def schedule_routes(
    runtime: Runtime, registry: Registry, stored: Callable[[], list[bytes]] | None = None
) -> list[BaseRoute]:
    """`stored` (a cluster node's): the committed schedule records of every partition. A node's
    processor answers the list for the partitions it owns, with their latest state; the others'
    come from the store, as their owners last committed them."""

    async def submit(action: str, name: str, schedule: Schedule | None = None) -> Response:
        try:
            reply = await runtime.call(lambda token: ChangeSchedule(action, name, schedule, token))
        except Unavailable as exc:
            return _error(503, str(exc))
        if reply.kind == "error":
            return _error(reply.code, reply.message)
        if reply.data is None:
            return Response(status_code=reply.code, headers={"content-length": "0"})
        return JSONResponse(reply.data, status_code=reply.code)

    def name_of(request: Request) -> str | JSONResponse:
        name: str = request.path_params["name"]
        if not NAME.fullmatch(name):
            return _error(400, "a schedule name is 1 to 200 of [a-zA-Z0-9_.-]")
        return name

    async def list_schedules(_: Request) -> Response:
        resp = await submit("list", "")
        if not isinstance(resp, JSONResponse) or resp.status_code != 200:
            return resp
        owned: list[dict[str, Any]] = json.loads(bytes(resp.body))
        if stored is None:
            return JSONResponse({"schedules": owned})
        names = {s["name"] for s in owned}
        others = [s.to_json() for s in map(Schedule.decode, stored()) if s.name not in names]
        return JSONResponse({"schedules": sorted(owned + others, key=lambda s: str(s["name"]))})

    async def get_schedule(request: Request) -> Response:
        name = name_of(request)
        if isinstance(name, JSONResponse):
            return name
        return await submit("get", name)  # the owner's (on a cluster, the schedule's partition's)

    async def put_schedule(request: Request) -> Response:
        name = name_of(request)
        if isinstance(name, JSONResponse):
            return name
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            return _error(400, f"Failed to parse the request body as JSON: {exc}")
        try:
            schedule = parse_schedule(name, body, registry)
        except ScheduleError as exc:
            return _error(422, str(exc))
        except LookupError as exc:
            return _error(404, str(exc.args[0]))
        return await submit("put", name, schedule)

    async def verb(request: Request, action: str) -> Response:
        name = name_of(request)
        if isinstance(name, JSONResponse):
            return name
        return await submit(action, name)

    async def delete_schedule(request: Request) -> Response:
        return await verb(request, "delete")

    async def pause(request: Request) -> Response:
        return await verb(request, "pause")

    async def resume(request: Request) -> Response:
        return await verb(request, "resume")

    return [
        Route("/schedules", list_schedules, methods=["GET"]),
        Route("/schedules/{name}", get_schedule, methods=["GET"]),
        Route("/schedules/{name}", put_schedule, methods=["PUT"]),
        Route("/schedules/{name}", delete_schedule, methods=["DELETE"]),
        Route("/schedules/{name}/pause", pause, methods=["PATCH"]),
        Route("/schedules/{name}/resume", resume, methods=["PATCH"]),
    ]
