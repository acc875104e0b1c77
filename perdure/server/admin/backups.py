"""Admin routes for online backups (Perdure's; Restate has no such endpoint):
`POST /backups {"destination": "/dir" | "file:///dir" | "s3://bucket/prefix"}` queues a backup
(202 with the job), `GET /backups/{id}` follows it, `GET /backups` lists recent jobs (periodic
snapshots too) and the snapshot policy. The destination is written by
the server, on its machine (docs/backup.md). Errors: 400 bad or non-empty destination, 409 a
backup already running, 501 a PostgreSQL store (pg_dump / base backups)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.server.backup.manifest import BackupError
from perdure.server.backup.runner import BackupBusy, BackupRunner, BackupUnsupported


def _error(status: int, message: str) -> Response:
    return JSONResponse({"message": message}, status_code=status)


def backup_routes(runner: BackupRunner) -> list[BaseRoute]:
    async def start(request: Request) -> Response:
        try:
            body: Any = await request.json()
        except ValueError:
            return _error(400, 'expected a JSON body {"destination": "..."}')
        destination = body.get("destination") if isinstance(body, dict) else None
        if not isinstance(destination, str) or not destination:
            return _error(400, 'expected a JSON body {"destination": "..."}')
        try:
            job = await runner.request(destination)
        except BackupUnsupported as exc:
            return _error(501, str(exc))
        except BackupBusy as exc:
            return _error(409, str(exc))
        except BackupError as exc:
            return _error(400, str(exc))
        return JSONResponse(job.to_json(), status_code=202)

    async def get_one(request: Request) -> Response:
        job = runner.job(request.path_params["id"])
        if job is None:
            return _error(
                404, f"no backup {request.path_params['id']} (the server keeps its recent jobs only)"
            )
        return JSONResponse(job.to_json())

    async def list_all(_: Request) -> Response:
        policy = runner.policy
        snapshots = (
            None
            if policy is None
            else {
                "destination": policy.destination,
                "snapshot_interval_s": policy.interval_s,
                "num_retained": policy.num_retained,
            }
        )
        return JSONResponse({"backups": [j.to_json() for j in runner.jobs()], "snapshots": snapshots})

    return [
        Route("/backups", start, methods=["POST"]),
        Route("/backups", list_all, methods=["GET"]),
        Route("/backups/{id}", get_one, methods=["GET"]),
    ]
