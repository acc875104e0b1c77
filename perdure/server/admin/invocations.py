"""Admin routes over invocations: cancel, kill, purge (also the older
DELETE /invocations/{id}?mode=...)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.protocol.ids import IdError, InvocationId
from perdure.server.processor.commands import Terminate
from perdure.server.runtime import Runtime, Unavailable


def invocation_routes(runtime: Runtime) -> list[BaseRoute]:
    async def terminate(request: Request, mode: str) -> Response:
        text = request.path_params["id"]
        try:
            raw = InvocationId.parse(text).raw
        except IdError as exc:
            return JSONResponse(
                {
                    "message": f"The request field 'invocation_id' is invalid. Reason: {exc}",
                    "restate_code": None,
                },
                status_code=400,
            )
        try:
            reply = await runtime.call(lambda token: Terminate(raw, mode, token))
        except Unavailable as exc:
            return JSONResponse({"message": str(exc), "restate_code": None}, status_code=503)
        if reply.kind == "error":
            return JSONResponse({"message": reply.message, "restate_code": None}, status_code=reply.code)
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

    async def delete(request: Request) -> Response:
        mode = request.query_params.get("mode", "Cancel").lower()
        if mode not in ("cancel", "kill", "purge"):
            return JSONResponse({"message": f"unknown mode {mode}", "restate_code": None}, status_code=400)
        resp = await terminate(request, mode)
        if resp.status_code == 400:
            return resp
        return Response(status_code=202, headers={"content-length": "0"})

    return [
        Route("/invocations/{id}/cancel", cancel, methods=["PATCH"]),
        Route("/invocations/{id}/kill", kill, methods=["PATCH"]),
        Route("/invocations/{id}/purge", purge, methods=["PATCH"]),
        Route("/invocations/{id}/purge-journal", purge_journal, methods=["PATCH"]),
        Route("/invocations/{id}/pause", pause, methods=["PATCH"]),
        Route("/invocations/{id}/resume", resume, methods=["PATCH"]),
        Route("/invocations/{id}", delete, methods=["DELETE"]),
    ]
