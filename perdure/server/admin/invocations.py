"""Admin routes over invocations: cancel, kill, purge, pause, resume (which also retries a
backing-off invocation now), restart-as-new, the older DELETE /invocations/{id}?mode=..., and
Perdure's batch endpoint (one operation over a list of ids; docs/admin-batch.md)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.protocol.ids import IdError, InvocationId, is_deployment_id
from perdure.server.processor.commands import Command, RestartAsNew, Terminate
from perdure.server.processor.effects import Reply
from perdure.server.runtime import Runtime, Unavailable

BATCH_IDS_MAX = 1000  # ids in one batch request
BATCH_OPERATIONS = ("cancel", "kill", "pause", "resume", "purge", "restart-as-new")
U32_MAX = (1 << 32) - 1


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "restate_code": None}, status_code=status)


def _parse_id(text: str) -> bytes | str:
    """The raw id, or Restate's message for a malformed one."""
    try:
        return InvocationId.parse(text).raw
    except IdError as exc:
        return f"The request field 'invocation_id' is invalid. Reason: {exc}"


def _restart_params(request: Request) -> tuple[int | None, str | None] | Response:
    raw_from = request.query_params.get("from")
    from_index: int | None = None
    if raw_from is not None:
        if not raw_from.isdigit():
            return PlainTextResponse(
                "Failed to deserialize query string: from: invalid digit found in string", status_code=400
            )
        from_index = int(raw_from)
        if from_index > U32_MAX:
            return PlainTextResponse(
                "Failed to deserialize query string: from: number too large to fit in target type",
                status_code=400,
            )
    deployment = request.query_params.get("deployment")
    if deployment is not None and deployment.lower() in ("keep", "latest"):
        deployment = deployment.lower()
    elif deployment is not None and not is_deployment_id(deployment):
        return PlainTextResponse(
            f"Failed to deserialize query string: deployment: unknown variant `{deployment}`", status_code=400
        )
    return from_index, deployment


def _command_for(
    operation: str, raw: bytes, restart: tuple[int | None, str | None]
) -> Callable[[int], Command]:
    if operation == "restart-as-new":
        return lambda token: RestartAsNew(raw, restart[0], restart[1], token)
    return lambda token: Terminate(raw, operation, token)


def invocation_routes(runtime: Runtime) -> list[BaseRoute]:
    async def submit(make: Callable[[int], Command]) -> Reply:
        try:
            return await runtime.call(make)
        except Unavailable as exc:
            return Reply(0, "error", code=503, message=str(exc))

    async def terminate(request: Request, mode: str) -> Response:
        raw = _parse_id(request.path_params["id"])
        if isinstance(raw, str):
            return _error(400, raw)
        reply = await submit(lambda token: Terminate(raw, mode, token))
        if reply.kind == "error":
            return _error(reply.code, reply.message)
        return Response(status_code=reply.code, headers={"content-length": "0"})

    async def cancel(request: Request) -> Response:
        return await terminate(request, "cancel")

    async def kill(request: Request) -> Response:
        return await terminate(request, "kill")

    async def purge(request: Request) -> Response:
        return await terminate(request, "purge")

    async def purge_journal(request: Request) -> Response:
        return await terminate(request, "purge_journal")

    async def pause(request: Request) -> Response:
        return await terminate(request, "pause")

    async def resume(request: Request) -> Response:
        return await terminate(request, "resume")

    async def restart_as_new(request: Request) -> Response:
        raw = _parse_id(request.path_params["id"])
        if isinstance(raw, str):
            return _error(400, raw)
        params = _restart_params(request)
        if isinstance(params, Response):
            return params
        reply = await submit(_command_for("restart-as-new", raw, params))
        if reply.kind == "error":
            return _error(reply.code, reply.message)
        return JSONResponse({"new_invocation_id": reply.invocation_id})

    async def delete(request: Request) -> Response:
        mode = request.query_params.get("mode", "Cancel").lower()
        if mode not in ("cancel", "kill", "purge"):
            return _error(400, f"unknown mode {mode}")
        resp = await terminate(request, mode)
        if resp.status_code == 400:
            return resp
        return Response(status_code=202, headers={"content-length": "0"})

    async def batch(request: Request) -> Response:
        parsed = await _batch_request(request, request.path_params.get("operation"))
        if isinstance(parsed, Response):
            return parsed
        operation, ids, restart = parsed
        results: list[dict[str, Any]] = [{"invocation_id": text} for text in ids]
        pending: list[tuple[dict[str, Any], asyncio.Task[Reply]]] = []
        async with asyncio.TaskGroup() as tg:
            for result in results:
                raw = _parse_id(result["invocation_id"])
                if isinstance(raw, str):
                    result.update(status=400, message=raw)
                    continue
                pending.append((result, tg.create_task(submit(_command_for(operation, raw, restart)))))
        for result, task in pending:
            reply = task.result()
            if reply.kind == "error":
                result.update(status=reply.code, message=reply.message)
            else:
                result.update(status=reply.code)
                if operation == "restart-as-new":
                    result["new_invocation_id"] = reply.invocation_id
        failed = [r["invocation_id"] for r in results if r["status"] >= 300]
        return JSONResponse(
            {
                "operation": operation,
                "succeeded": len(results) - len(failed),
                "failed": len(failed),
                "failed_invocation_ids": failed,
                "results": results,
            }
        )

    return [
        Route("/invocations/batch", batch, methods=["POST"]),
        Route("/invocations/batch/{operation}", batch, methods=["POST"]),
        Route("/invocations/{id}/cancel", cancel, methods=["PATCH"]),
        Route("/invocations/{id}/kill", kill, methods=["PATCH"]),
        Route("/invocations/{id}/purge", purge, methods=["PATCH"]),
        Route("/invocations/{id}/purge-journal", purge_journal, methods=["PATCH"]),
        Route("/invocations/{id}/pause", pause, methods=["PATCH"]),
        Route("/invocations/{id}/resume", resume, methods=["PATCH"]),
        Route("/invocations/{id}/restart-as-new", restart_as_new, methods=["PATCH"]),
        Route("/invocations/{id}", delete, methods=["DELETE"]),
    ]


async def _batch_request(
    request: Request, path_operation: str | None
) -> tuple[str, list[str], tuple[int | None, str | None]] | Response:
    """`{"operation": ..., "invocation_ids": [...], "from"?: n, "deployment"?: ...}`, checked; the
    operation may come from the path instead (`/invocations/batch/{operation}`)."""
    try:
        body = json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return _error(400, f"Failed to parse the request body as JSON: {exc}")
    if not isinstance(body, dict):
        return _error(422, "the body must be a JSON object with 'operation' and 'invocation_ids'")
    operation = path_operation or body.get("operation")
    ids = body.get("invocation_ids")
    if operation not in BATCH_OPERATIONS:
        return _error(422, f"'operation' must be one of {', '.join(BATCH_OPERATIONS)}")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return _error(422, "'invocation_ids' must be a list of invocation id strings")
    if len(ids) > BATCH_IDS_MAX:
        return _error(422, f"at most {BATCH_IDS_MAX} invocation ids per batch, got {len(ids)}")
    from_index = body.get("from")
    if from_index is not None and (not isinstance(from_index, int) or not 0 <= from_index <= U32_MAX):
        return _error(422, "'from' must be a journal entry index (a non-negative integer)")
    deployment = body.get("deployment")
    if deployment is not None and not (
        isinstance(deployment, str) and (deployment in ("keep", "latest") or is_deployment_id(deployment))
    ):
        return _error(422, "'deployment' must be 'keep', 'latest' or a deployment id")
    return operation, list(dict.fromkeys(ids)), (from_index, deployment)
