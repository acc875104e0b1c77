"""`POST /services/{name}/state`: replace all the state of one object or
workflow key (what `restate state edit` sends). Reading state is SQL
(`SELECT key, value FROM state WHERE ...`, what `restate state get` sends).

The write goes through the processor, which owns the key's state and caches
it, so it is ordered with the invocations running on that key: the route
calls `replace_state`, which the server wires to a processor command that
clears the key's state, writes the new entries in the same batch, and
answers once that batch is durable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.server.processor.schema import Schema

ReplaceState = Callable[[str, str, dict[bytes, bytes]], Awaitable[None]]
"""(service, key, new state) -> done once durable."""

STATE_BODY_MAX_BYTES = 32 * 1024 * 1024


class BadStateRequest(ValueError):
    """The body is not `{"object_key": str, "new_state": {str: [byte, ...]}}`."""


def parse_state_body(data: Any) -> tuple[str, dict[bytes, bytes]]:
    """The key and its new state; values are JSON arrays of byte values, as the CLI sends them."""
    if not isinstance(data, dict):
        raise BadStateRequest("expected a JSON object")
    key = data.get("object_key")
    new_state = data.get("new_state")
    if not isinstance(key, str):
        raise BadStateRequest('missing field "object_key"')
    if not isinstance(new_state, dict):
        raise BadStateRequest('missing field "new_state"')
    out: dict[bytes, bytes] = {}
    for name, value in new_state.items():
        if not isinstance(value, list) or not all(isinstance(b, int) and 0 <= b <= 255 for b in value):
            raise BadStateRequest(f"new_state.{name}: expected an array of bytes")
        out[name.encode()] = bytes(value)
    return key, out


def state_routes(schema: Schema, replace_state: ReplaceState) -> list[BaseRoute]:
    async def modify_state(request: Request) -> Response:
        name = request.path_params["name"]
        body = await request.body()
        if len(body) > STATE_BODY_MAX_BYTES:
            return JSONResponse(
                {
                    "message": f"the state body is larger than {STATE_BODY_MAX_BYTES} bytes",
                    "restate_code": None,
                },
                status_code=413,
            )
        try:
            key, new_state = parse_state_body(orjson.loads(body))
        except orjson.JSONDecodeError as exc:
            return PlainTextResponse(f"Failed to parse the request body as JSON: {exc}", status_code=400)
        except BadStateRequest as exc:
            return PlainTextResponse(
                f"Failed to deserialize the JSON body into the target type: {exc}", status_code=422
            )
        service = schema.service(name)
        if service is None:
            return Response(status_code=202)  # as Restate 1.7.12: accepted, and nothing to change
        if service.ty == "SERVICE":
            return JSONResponse(
                {"message": "Cannot modify state for service type Service", "restate_code": None},
                status_code=400,
            )
        await replace_state(name, key, new_state)
        return Response(status_code=202)

    return [Route("/services/{name}/state", modify_state, methods=["POST"])]
