"""DataFusion SQL translated for SQLite and PostgreSQL: the rewrites on the syntax tree, and
Perdure's SQLite functions that carry DataFusion's meaning (the FIRST_VALUE aggregate, timestamps
and intervals), run on a real SQLite connection."""

from __future__ import annotations

import sqlite3

import pytest

from perdure.server.query import functions
from perdure.server.query.dialect import TranslationError, translate
from perdure.server.query.functions import QueryContext, timestamp_text

NOW_MS = 1_795_000_000_000


@pytest.fixture
def conn() -> sqlite3.Connection:
    c = sqlite3.connect(":memory:")
    functions.register(c, QueryContext(now_ms=NOW_MS))
    c.execute("CREATE TABLE inv (id TEXT, svc TEXT, created_at TEXT, n INTEGER)")
    rows = [
        ("a", "S", timestamp_text(NOW_MS - 3_000), 3),
        ("b", "S", timestamp_text(NOW_MS - 5_000), None),
        ("c", "S", None, 1),
        ("d", "T", timestamp_text(NOW_MS - 7_200_000), 2),
    ]
    c.executemany("INSERT INTO inv VALUES (?, ?, ?, ?)", rows)
    return c


def run(conn: sqlite3.Connection, sql: str) -> list[tuple[object, ...]]:
    return conn.execute(translate(sql, "sqlite")).fetchall()


def test_first_value_aggregate_orders_like_datafusion(conn: sqlite3.Connection) -> None:
    # ASC puts NULLs last, DESC puts them first (DataFusion's and PostgreSQL's defaults).
    sql = "SELECT svc, FIRST_VALUE(id ORDER BY created_at ASC) AS oldest FROM inv GROUP BY svc ORDER BY svc"
    assert run(conn, sql) == [("S", "b"), ("T", "d")]
    assert run(conn, "SELECT FIRST_VALUE(id ORDER BY created_at DESC) FROM inv WHERE svc = 'S'") == [("c",)]
    assert run(conn, "SELECT FIRST_VALUE(id ORDER BY n DESC NULLS LAST) FROM inv") == [("a",)]
    assert run(conn, "SELECT LAST_VALUE(id ORDER BY n) FROM inv") == [("b",)]  # NULL sorts last
    assert run(conn, "SELECT FIRST_VALUE(id ORDER BY svc DESC, n ASC) FROM inv") == [("d",)]
    assert run(conn, "SELECT first_value(id) FROM inv WHERE svc = 'T'") == [("d",)]


def test_first_value_as_a_window_function_stays_one(conn: sqlite3.Connection) -> None:
    sql = "SELECT id, FIRST_VALUE(id) OVER (ORDER BY n DESC NULLS LAST) AS top FROM inv ORDER BY id"
    assert {r[1] for r in run(conn, sql)} == {"a"}


def test_intervals_and_now_use_the_query_clock(conn: sqlite3.Connection) -> None:
    recent = "SELECT id FROM inv WHERE to_timestamp(created_at) > now() - interval '1' hour ORDER BY id"
    assert run(conn, recent) == [("a",), ("b",)]
    assert run(conn, "SELECT id FROM inv WHERE created_at <= now() - INTERVAL '90 minutes'") == [("d",)]
    assert run(conn, "SELECT now() + interval '1 day 2 hours'") == [(timestamp_text(NOW_MS + 93_600_000),)]
    assert run(conn, "SELECT to_timestamp('2026-11-25T07:58:57Z')") == [("2026-11-25T07:58:57.000Z",)]
    assert run(conn, "SELECT to_timestamp(1)") == [("1970-01-01T00:00:01.000Z",)]


def test_unaliased_subquery_takes_the_alias_of_its_table(conn: sqlite3.Connection) -> None:
    sql = "SELECT COUNT(1) AS n FROM (SELECT * FROM inv i LIMIT 3) WHERE i.svc = 'S'"
    assert run(conn, sql) == [(3,)]


def test_keywords_are_quoted_and_identifiers_fold_to_lower_case(conn: sqlite3.Connection) -> None:
    conn.execute('CREATE TABLE journal ("index" INTEGER, name TEXT)')
    conn.execute("INSERT INTO journal VALUES (0, 'x'), (1, 'y')")
    assert run(conn, "SELECT index, Name FROM journal WHERE index == 1 ORDER BY index DESC") == [(1, "y")]
    cur = conn.execute(translate("SELECT Name AS Shown FROM journal LIMIT 1"))
    assert [d[0] for d in cur.description] == ["shown"]


def test_computed_columns_carry_datafusion_names(conn: sqlite3.Connection) -> None:
    cur = conn.execute(
        translate("SELECT count(*), COUNT(1), max(n), lower(svc), 1 + 2 FROM inv GROUP BY svc")
    )
    assert [d[0] for d in cur.description] == [
        "count(*)",
        "count(Int64(1))",
        "max(inv.n)",
        "lower(inv.svc)",
        "Int64(1) + Int64(2)",
    ]


def test_datafusion_spellings(conn: sqlite3.Connection) -> None:
    assert run(conn, "SELECT id FROM inv WHERE svc ILIKE 't' AND CAST(n AS STRING) = '2'") == [("d",)]
    assert run(conn, "SELECT GREATEST(n, 2) AS g FROM inv WHERE id = 'a'") == [(3,)]
    assert run(conn, "SELECT CAST(1 AS INT UNSIGNED) AS v;") == [(1,)]


@pytest.mark.parametrize(
    "sql, message",
    [
        ("SELECT 1; SELECT 2", "one SQL statement"),
        ("DELETE FROM inv", "read-only"),
        ("selec x", "syntax error"),
        ("SELECT (", "at line 1, column"),
        ("SELECT now() - interval '1' month", "months and years"),
    ],
)
def test_untranslatable_sql_is_the_callers_error(sql: str, message: str) -> None:
    with pytest.raises(TranslationError, match=message):
        translate(sql)


def test_postgres_target_spells_the_same_meaning() -> None:
    sql = (
        "SELECT svc, FIRST_VALUE(id ORDER BY created_at ASC) AS oldest, COUNT(1) AS n FROM inv "
        "WHERE name ILIKE 'a%' GROUP BY svc"
    )
    assert translate(sql, "postgres") == (
        "SELECT svc, (ARRAY_AGG(id ORDER BY created_at ASC))[1] AS oldest, COUNT(1) AS n FROM inv "
        "WHERE name ILIKE 'a%' GROUP BY svc"
    )
    # Timestamps are RFC 3339 text in the PostgreSQL store's views too.
    recent = translate("SELECT id FROM inv WHERE created_at > now() - interval '1' hour", "postgres")
    assert "INTERVAL '1 MILLISECOND'" in recent and "-3600000" in recent and "TO_CHAR(" in recent
    assert translate("SELECT CAST(1 AS INT UNSIGNED) AS v", "postgres") == "SELECT CAST(1 AS BIGINT) AS v"
    assert translate("SELECT column_name FROM information_schema.columns", "postgres") == (
        "SELECT column_name FROM pg_temp.columns"
    )
    assert translate("SELECT COUNT(1) FROM (SELECT * FROM t x) WHERE x.a = 1", "postgres").endswith(
        "FROM (SELECT * FROM t AS x) AS x WHERE x.a = 1"
    )
    with pytest.raises(ValueError, match="unknown SQL target"):
        translate("SELECT 1", "oracle")
