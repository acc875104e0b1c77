"""`GET /cluster`: the nodes, and each partition's owner, epoch, last batch and lease
expiry (seconds from now, on the database clock). On SQLite there are no leases: one
node owns everything."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

ClusterStatus = Callable[[], Awaitable[dict[str, Any]]]


def sqlite_status(node: str) -> ClusterStatus:
    async def status() -> dict[str, Any]:
        return {
            "store": "sqlite",
            "node": node,
            "partitions_total": 0,
            "nodes": [{"name": node}],
            "partitions": [],
        }

    return status


def cluster_routes(status: ClusterStatus) -> list[BaseRoute]:
    async def get_cluster(_: Request) -> Response:
        return JSONResponse(await status())

    return [Route("/cluster", get_cluster, methods=["GET"])]
