"""SQL introspection on the PostgreSQL store (not yet: answers a clear error)."""

from __future__ import annotations

from perdure.server.query.catalog import CatalogSource, empty_catalog
from perdure.server.query.engine import LiveAttempts, QueryError, QueryLimits, QueryResult, no_live_attempts


class PgQueryEngine:
    def __init__(
        self,
        dsn: str,
        *,
        live_attempts: LiveAttempts = no_live_attempts,
        catalog: CatalogSource = empty_catalog,
        limits: QueryLimits | None = None,
    ) -> None:
        self._dsn = dsn
        self._live = live_attempts
        self._catalog = catalog
        self.limits = limits or QueryLimits()

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def execute(self, sql: str) -> QueryResult:
        raise QueryError("SQL introspection is not yet available on the PostgreSQL store")
