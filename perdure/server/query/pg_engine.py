"""SQL introspection on the PostgreSQL store: the same tables, columns and SQL
dialect as on SQLite (`engine.QueryEngine`), served by PostgreSQL itself.

Each pooled connection defines Restate's tables as TEMP VIEWs once
(`pg_views`). A query runs in a READ ONLY, REPEATABLE READ transaction (one
snapshot across all partitions) with `statement_timeout` as its time limit;
the facts that live only in the server's memory (attempts in flight, the
registry) are written into that transaction (a temp table, two settings)
first. The row limit is a cursor fetch of one row more than allowed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from perdure.server.query.catalog import CatalogSource, empty_catalog
from perdure.server.query.engine import LiveAttempts, QueryError, QueryLimits, QueryResult, no_live_attempts
from perdure.server.query.pg_views import DEPLOYMENTS_SETTING, LIVE_TABLE, SERVICES_SETTING, setup_statements

_TIMEOUT_SQLSTATE = "57014"  # query_canceled (statement_timeout)
_READ_ONLY_SQLSTATE = "25006"  # read_only_sql_transaction
_INSUFFICIENT_PRIVILEGE = "42501"


async def _setup(conn: asyncpg.Connection[Any]) -> None:
    for sql, rows in setup_statements():
        if rows:
            await conn.executemany(sql, rows)
        else:
            await conn.execute(sql)


class PgQueryEngine:
    """Runs introspection SQL on PostgreSQL. `open()` after the store exists; `close()` at shutdown."""

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
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None

    async def open(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._dsn, min_size=1, max_size=self.limits.connections, init=_setup
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def execute(self, sql: str) -> QueryResult:
        """Run one SELECT; QueryError on bad SQL, a write, the time or row limit."""
        if self._pool is None:
            raise RuntimeError("query engine is not open")
        pg_sql = _to_postgres(sql)
        deployments, services = self._catalog().to_json()
        live = list(self._live())
        async with self._pool.acquire() as conn:
            # Rolled back, never committed: even a temp-table write a query sneaks in
            # (allowed in a READ ONLY transaction) leaves the connection as it was.
            tx = conn.transaction(isolation="repeatable_read", readonly=True)
            await tx.start()
            try:
                return await self._run(conn, pg_sql, live, deployments, services)
            except asyncpg.PostgresError as exc:
                raise self._error(exc) from None
            finally:
                await tx.rollback()

    async def _run(
        self, conn: Any, sql: str, live: list[bytes], deployments: str, services: str
    ) -> QueryResult:
        timeout_ms = max(1, int(self.limits.time_limit_s * 1000))
        await conn.execute(f"SET LOCAL statement_timeout = {timeout_ms}")
        await conn.execute(
            f"SELECT set_config('{SERVICES_SETTING}', $1, true), "
            f"set_config('{DEPLOYMENTS_SETTING}', $2, true)",
            services,
            deployments,
        )
        await conn.execute(f"DELETE FROM {LIVE_TABLE}")
        if live:
            await conn.execute(f"INSERT INTO {LIVE_TABLE} SELECT DISTINCT unnest($1::bytea[])", live)
        try:
            stmt = await conn.prepare(sql)
        except asyncpg.PostgresSyntaxError as exc:
            if "multiple commands" in str(exc):
                raise QueryError("send one SQL statement per query") from None
            raise
        attributes = stmt.get_attributes()
        columns = [a.name for a in attributes]
        numeric = [i for i, a in enumerate(attributes) if a.type.name == "numeric"]
        rows_max = self.limits.rows_max
        if not columns:
            raise QueryError("only read-only queries (SELECT) are allowed")
        cursor = await stmt.cursor()
        rows = await cursor.fetch(rows_max + 1)
        if len(rows) > rows_max:
            raise QueryError(f"the query returned more than {rows_max} rows; add a LIMIT")
        if not numeric:
            return QueryResult(columns, [tuple(r) for r in rows])
        return QueryResult(columns, [_plain_numbers(r, numeric) for r in rows])

    def _error(self, exc: asyncpg.PostgresError) -> QueryError:
        state = getattr(exc, "sqlstate", None)
        if state == _TIMEOUT_SQLSTATE:
            return QueryError(f"the query was stopped after its time limit of {self.limits.time_limit_s:g} s")
        if state in (_READ_ONLY_SQLSTATE, _INSUFFICIENT_PRIVILEGE):
            return QueryError("only read-only queries (SELECT) are allowed")
        return QueryError(f"SQL error: {exc}")


def _plain_numbers(row: Any, numeric: list[int]) -> tuple[Any, ...]:
    """PostgreSQL's `numeric` (SUM of bigints, unsigned casts) as the int or float SQLite gives:
    DataFusion sums integers to an integer, and the JSON and Arrow encoders take no Decimal."""
    out = list(row)
    for i in numeric:
        value = out[i]
        if isinstance(value, Decimal):
            out[i] = int(value) if value == value.to_integral_value() else float(value)
    return tuple(out)


def _to_postgres(sql: str) -> str:
    from perdure.server.query.dialect import TranslationError, translate

    try:
        return translate(sql, "postgres")
    except TranslationError as exc:
        raise QueryError(f"SQL error: {exc}") from None
