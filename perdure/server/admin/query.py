"""`POST /query`: SQL introspection over the live runtime state.

Body `{"query": "<SQL>"}`. `accept: application/json` answers `{"rows": [...]}`;
any other accept (`*/*`, none, `application/vnd.apache.arrow.stream`) answers
an Arrow IPC stream, as Restate does (the `restate` CLI asks for both). Bad
SQL, writes, and queries over their time or row limit answer 400 with a
message saying why."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.server.query.encode import ARROW_CONTENT_TYPE, to_arrow, to_json
from perdure.server.query.engine import QueryError, SqlEngine

QUERY_BODY_MAX_BYTES = 1024 * 1024


def wants_json(accept: str) -> bool:
    """JSON only when asked for by name; Restate's default is Arrow."""
    return any(part.split(";")[0].strip().lower() == "application/json" for part in accept.split(","))


def _error(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"message": message, "restate_code": None}, status_code=status)


def _parse(body: bytes) -> str | Response:
    if len(body) > QUERY_BODY_MAX_BYTES:
        return _error(f"the query body is larger than {QUERY_BODY_MAX_BYTES} bytes", 413)
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return PlainTextResponse(f"Failed to parse the request body as JSON: {exc}", status_code=400)
    if not isinstance(data, dict) or not isinstance(data.get("query"), str):
        return PlainTextResponse(
            'Failed to deserialize the JSON body into the target type: missing field "query"',
            status_code=422,
        )
    query: str = data["query"]
    return query


def query_routes(engine: SqlEngine) -> list[BaseRoute]:
    async def run_query(request: Request) -> Response:
        parsed = _parse(await request.body())
        if isinstance(parsed, Response):
            return parsed
        try:
            result = await engine.execute(parsed)
        except QueryError as exc:
            return _error(str(exc))
        # Encoding a large result takes a while: keep it off the event loop.
        if wants_json(request.headers.get("accept", "")):
            return Response(await asyncio.to_thread(to_json, result), media_type="application/json")
        return Response(await asyncio.to_thread(to_arrow, result), media_type=ARROW_CONTENT_TYPE)

    return [Route("/query", run_query, methods=["POST"])]
