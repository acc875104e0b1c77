"""Admin routes for concurrency-limit rules, as Restate 1.7.12's: `PUT /limits/rules` (a batch of
upserts, all or none) and `POST /limits/rules/bulk-delete`; rules are listed with SQL
(`sys_rules`). Perdure adds a token bucket to a rule's `limits`: `rate_per_s` and `burst`."""

from __future__ import annotations

import json
import math
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.server.processor.commands import ChangeRules, RuleChange
from perdure.server.processor.limits import Rule, parse_pattern
from perdure.server.runtime import Runtime, Unavailable

_SHAPE = "Failed to deserialize the JSON body into the target type: "
_PRECONDITIONS = ("none", "matches", "does_not_exist")


class _Shape(Exception):
    """The body does not have Restate's shape (422, plain text as Restate's)."""


def _field(path: str, message: str) -> _Shape:
    return _Shape(f"{path}: {message}")


def _u32(value: Any, path: str, *, nonzero: bool) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value >= 1 << 32:
        raise _field(path, f"invalid value: {json.dumps(value)}, expected u32")
    if nonzero and value == 0:
        raise _field(path, "invalid value: integer `0`, expected a nonzero u32")
    return value


def _pattern(entry: dict[str, Any], path: str) -> str:
    if "pattern" not in entry:
        raise _field(path, "missing field `pattern`")
    pattern = entry["pattern"]
    if not isinstance(pattern, str):
        raise _field(f"{path}.pattern", "invalid type: expected a string")
    try:
        parse_pattern(pattern)
    except ValueError as e:
        raise _field(f"{path}.pattern", str(e)) from None
    return pattern


def _limits(value: Any, path: str) -> tuple[int | None, float | None, int | None]:
    if value is None:
        return None, None, None
    if not isinstance(value, dict):
        raise _field(path, "invalid type: expected struct UserLimits")
    concurrency = value.get("concurrency")
    if concurrency is not None:
        concurrency = _u32(concurrency, f"{path}.concurrency", nonzero=True)
    rate = value.get("rate_per_s")
    if rate is not None and (
        isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) or rate <= 0
    ):
        raise _field(f"{path}.rate_per_s", f"invalid value: {json.dumps(rate)}, expected a positive number")
    burst = value.get("burst")
    if burst is not None:
        burst = _u32(burst, f"{path}.burst", nonzero=True)
        if rate is None:
            raise _field(f"{path}.burst", "burst needs rate_per_s")
    return concurrency, None if rate is None else float(rate), burst


def _upsert(entry: Any, i: int) -> RuleChange:
    path = f"[{i}]"
    if not isinstance(entry, dict):
        raise _field(path, "invalid type: expected struct UpsertRuleRequest")
    pattern = _pattern(entry, path)
    concurrency, rate, burst = _limits(entry.get("limits"), f"{path}.limits")
    description = entry.get("description")
    if description is not None and not isinstance(description, str):
        raise _field(f"{path}.description", "invalid type: expected a string")
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise _field(f"{path}.disabled", "invalid type: expected a boolean")
    precondition, version = _precondition(entry.get("precondition"), f"{path}.precondition")
    return RuleChange(pattern, False, concurrency, rate, burst, description, disabled, precondition, version)


def _precondition(value: Any, path: str) -> tuple[str, int | None]:
    if value is None:
        return "none", None
    if not isinstance(value, dict) or value.get("type") not in _PRECONDITIONS:
        raise _field(path, "unknown variant, expected one of `none`, `matches`, `does_not_exist`")
    if value["type"] != "matches":
        return str(value["type"]), None
    if "version" not in value:
        raise _field(path, "missing field `version`")
    return "matches", _u32(value["version"], f"{path}.version", nonzero=False)


def _delete(entry: Any, i: int) -> RuleChange:
    path = f"[{i}]"
    if not isinstance(entry, dict):
        raise _field(path, "invalid type: expected struct DeleteRuleRequest")
    pattern = _pattern(entry, path)
    expected = entry.get("expected_version")
    if expected is None:
        return RuleChange(pattern, delete=True)
    version = _u32(expected, f"{path}.expected_version", nonzero=False)
    return RuleChange(pattern, delete=True, precondition="matches", expected_version=version)


def limits_routes(runtime: Runtime) -> list[BaseRoute]:
    async def change(request: Request, parse: Any) -> Response:
        if request.headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
            return PlainTextResponse(
                "Expected request with `Content-Type: application/json`", status_code=415
            )
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            return PlainTextResponse(f"Failed to parse the request body as JSON: {e}", status_code=400)
        try:
            if not isinstance(body, list):
                raise _Shape(f"invalid type: {type(body).__name__}, expected a sequence")
            changes = tuple(parse(entry, i) for i, entry in enumerate(body))
        except _Shape as e:
            return PlainTextResponse(_SHAPE + str(e), status_code=422)
        try:
            reply = await runtime.call(lambda token: ChangeRules(changes, token))
        except Unavailable as e:
            return JSONResponse({"message": str(e), "restate_code": None}, status_code=503)
        if reply.kind == "error":
            return JSONResponse({"message": reply.message, "restate_code": None}, status_code=reply.code)
        return JSONResponse([r.to_json() if isinstance(r, Rule) else r for r in reply.data])

    async def upsert(request: Request) -> Response:
        return await change(request, _upsert)

    async def bulk_delete(request: Request) -> Response:
        return await change(request, _delete)

    return [
        Route("/limits/rules", upsert, methods=["PUT"]),
        Route("/limits/rules/bulk-delete", bulk_delete, methods=["POST"]),
    ]
