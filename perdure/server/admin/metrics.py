"""`GET /metrics`: Prometheus text. The backlog gauges (inbox depth and oldest pending age per
service) are read from the store at scrape time, through the query engine's read-only connections."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from perdure.server.query.engine import QueryError, QueryResult
from perdure.server.query.functions import timestamp_ms
from perdure.server.telemetry.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("perdure.metrics")

BACKLOG_SQL = (
    "SELECT target_service_name AS service, COUNT(*) AS depth, MIN(created_at) AS oldest "
    "FROM sys_invocation_status WHERE status = 'inboxed' GROUP BY target_service_name"
)


class Introspection(Protocol):
    """Either store's query engine."""

    async def execute(self, sql: str) -> QueryResult: ...


def metrics_routes(metrics: Metrics, engine: Introspection) -> list[BaseRoute]:
    async def scrape(request: Request) -> Response:
        try:
            result = await engine.execute(BACKLOG_SQL)
        except QueryError:
            log.exception("could not read the backlog for /metrics")
        else:
            now_ms = time.time() * 1000
            metrics.backlog(
                (service, depth, max(0.0, (now_ms - (timestamp_ms(oldest) or now_ms)) / 1000))
                for service, depth, oldest in result.rows
            )
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return [Route("/metrics", scrape, methods=["GET"])]
