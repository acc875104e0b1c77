"""The query engine: SQL over the live store on read-only connections in
worker threads, so a query never holds up the processor.

Each connection opens the store with `mode=ro`, allows only reads (an
authorizer denies every other action), defines the introspection views as
TEMP VIEWs, and attaches an in-memory `information_schema`. A query gets a
time limit (the progress handler interrupts it) and a row limit; both fail
with a clear `QueryError`. Facts that live only in the server's memory (which
attempts are in flight, the registry) are snapshotted on the event loop and
handed to the query."""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from perdure.server.query import functions
from perdure.server.query.catalog import Catalog, CatalogSource, empty_catalog
from perdure.server.query.functions import QueryContext
from perdure.server.query.tables import TABLES, information_schema_rows
from perdure.server.query.views import all_views_sql

LiveAttempts = Callable[[], Collection[bytes]]
"""Raw ids (24 bytes) of the invocations whose attempt is in flight right now.
Called on the event loop before each query; the server wires it to the
processor's resident invocations with `attempt_live`."""

PROGRESS_STEPS = 10_000  # SQLite VM steps between two time-limit checks
_ALLOWED = frozenset(
    (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE)
)


class SqlEngine(Protocol):
    """What `/query` needs of an engine (SQLite's here, PostgreSQL's in pg_engine)."""

    limits: QueryLimits

    async def execute(self, sql: str) -> QueryResult: ...


class QueryError(Exception):
    """The query is the caller's fault: bad SQL, a write, too slow, too many rows."""


@dataclass(frozen=True, slots=True)
class QueryLimits:
    time_limit_s: float = 10.0
    rows_max: int = 100_000
    connections: int = 2  # queries that run at once


@dataclass(frozen=True, slots=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def no_live_attempts() -> Collection[bytes]:
    return frozenset()


@dataclass(slots=True)
class _Conn:
    conn: sqlite3.Connection
    ctx: QueryContext


def _read_only(action: int, *_: object) -> int:
    return sqlite3.SQLITE_OK if action in _ALLOWED else sqlite3.SQLITE_DENY


def _open(db_path: Path) -> _Conn:
    conn = sqlite3.connect(
        f"{db_path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
    )
    conn.execute("PRAGMA busy_timeout=10000")
    ctx = QueryContext()
    functions.register(conn, ctx)
    conn.execute("ATTACH DATABASE ':memory:' AS information_schema")
    conn.execute(
        "CREATE TABLE information_schema.columns (table_catalog TEXT, table_schema TEXT, table_name TEXT, "
        "column_name TEXT, ordinal_position INTEGER, is_nullable TEXT, data_type TEXT, "
        "character_octet_length INTEGER)"
    )
    conn.executemany(
        "INSERT INTO information_schema.columns VALUES (?, ?, ?, ?, ?, ?, ?, ?)", information_schema_rows()
    )
    conn.execute(
        "CREATE TABLE information_schema.tables (table_catalog TEXT, table_schema TEXT, "
        "table_name TEXT, table_type TEXT)"
    )
    conn.executemany(
        "INSERT INTO information_schema.tables VALUES ('restate', 'public', ?, 'VIEW')",
        [(t,) for t in TABLES],
    )
    for sql in all_views_sql():
        conn.execute(sql)
    conn.set_authorizer(_read_only)

    def over_time() -> int:
        if time.monotonic() > ctx.deadline:
            ctx.timed_out = True
            return 1
        return 0

    conn.set_progress_handler(over_time, PROGRESS_STEPS)
    return _Conn(conn, ctx)


class QueryEngine:
    """Runs introspection SQL. `open()` after the store exists; `close()` at shutdown."""

    def __init__(
        self,
        db_path: Path,
        *,
        live_attempts: LiveAttempts = no_live_attempts,
        catalog: CatalogSource = empty_catalog,
        limits: QueryLimits | None = None,
    ) -> None:
        self._path = db_path
        self._live = live_attempts
        self._catalog = catalog
        self.limits = limits or QueryLimits()
        self._pool: queue.SimpleQueue[_Conn] = queue.SimpleQueue()
        self._conns: list[_Conn] = []
        self._executor: ThreadPoolExecutor | None = None

    async def open(self) -> None:
        n = self.limits.connections
        self._executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix="perdure-query")
        loop = asyncio.get_running_loop()
        for _ in range(n):
            c = await loop.run_in_executor(self._executor, _open, self._path)
            self._conns.append(c)
            self._pool.put(c)

    async def close(self) -> None:
        for c in self._conns:
            c.conn.interrupt()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        for c in self._conns:
            c.conn.close()
        self._conns.clear()

    async def execute(self, sql: str) -> QueryResult:
        """Run one SELECT; QueryError on bad SQL, a write, the time or row limit."""
        if self._executor is None:
            raise RuntimeError("query engine is not open")
        catalog: Catalog = self._catalog()
        deployments, services = catalog.to_json()
        snapshot = QueryContext(
            live=frozenset(self._live()),
            deployments_json=deployments,
            services_json=services,
            subscription_lag_json=catalog.subscription_lag_json(),
        )
        box: list[_Conn] = []
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._executor, self._run, sql, snapshot, box)
        try:
            return await fut
        except asyncio.CancelledError:
            if box:
                box[0].conn.interrupt()  # the caller went away: stop the query now
            raise

    def _run(self, sql: str, snapshot: QueryContext, box: list[_Conn]) -> QueryResult:
        # sqlglot takes a moment to import: on the first query, not at server start-up.
        from perdure.server.query.dialect import TranslationError, translate

        try:
            sqlite_sql = translate(sql, "sqlite")
        except TranslationError as exc:
            raise QueryError(f"SQL error: {exc}") from None
        c = self._pool.get()
        box.append(c)
        ctx = c.ctx
        ctx.live, ctx.deployments_json, ctx.services_json = (
            snapshot.live,
            snapshot.deployments_json,
            snapshot.services_json,
        )
        ctx.subscription_lag_json = snapshot.subscription_lag_json
        ctx.now_ms = snapshot.now_ms
        ctx.timed_out = False
        ctx.deadline = time.monotonic() + self.limits.time_limit_s
        try:
            return self._fetch(c.conn, sqlite_sql)
        except sqlite3.Error as exc:
            raise self._error(exc, ctx) from None
        finally:
            ctx.deadline = float("inf")
            ctx.live = frozenset()
            self._pool.put(c)

    def _fetch(self, conn: sqlite3.Connection, sql: str) -> QueryResult:
        rows_max = self.limits.rows_max
        cur = conn.execute(sql)
        try:
            columns = [d[0] for d in cur.description or ()]
            rows = cur.fetchmany(rows_max + 1)
            if len(rows) > rows_max:
                raise QueryError(f"the query returned more than {rows_max} rows; add a LIMIT")
            return QueryResult(columns, rows)
        finally:
            cur.close()

    def _error(self, exc: sqlite3.Error, ctx: QueryContext) -> QueryError:
        text = str(exc)
        if ctx.timed_out:
            return QueryError(f"the query was stopped after its time limit of {self.limits.time_limit_s:g} s")
        if text == "not authorized":
            return QueryError("only read-only queries (SELECT) are allowed")
        if isinstance(exc, sqlite3.ProgrammingError) and "one statement" in text:
            return QueryError("send one SQL statement per query")
        return QueryError(f"SQL error: {text}")
