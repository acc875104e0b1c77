"""Restate's SQL dialect (Apache DataFusion's, as the `restate` CLI and UI
write it) translated to the SQL of the store, through sqlglot's parser: the
query becomes a syntax tree, a few DataFusion meanings are rewritten on the
tree, and the target dialect prints it. The target is a parameter, so the
SQLite store and the PostgreSQL store read the same dialect.

What differs from what sqlglot's PostgreSQL reader gives (DataFusion's syntax
is close to PostgreSQL's, and so are its NULL orderings):

- `FIRST_VALUE(x ORDER BY k)` and `LAST_VALUE(...)` are aggregates in
  DataFusion (`restate services status` groups with them); outside a window,
  SQLite gets Perdure's `perdure_first_value` aggregate, PostgreSQL
  `(ARRAY_AGG(x ORDER BY k))[1]`.
- A subquery in FROM without an alias takes the alias of the table it reads,
  as DataFusion lets the outer query use it (the CLI counts with
  `FROM (SELECT * FROM sys_invocation inv LIMIT 50000) WHERE inv.status = ...`).
- Unquoted identifiers are lower-cased, as DataFusion folds them; identifiers
  that are keywords of the target (`index`) are quoted.
- `to_timestamp(x)`, `now()` and timestamp +/- `INTERVAL` keep DataFusion's
  meaning over the store's timestamps (RFC 3339 text in SQLite)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

TARGETS = ("sqlite", "postgres")

# SQLite's keywords (sqlite.org/lang_keywords.html): an identifier spelled like one is quoted.
_SQLITE_KEYWORD_TEXT = """
abort action add after all alter always analyze and as asc attach autoincrement before begin between
by cascade case cast check collate column commit conflict constraint create cross current
current_date current_time current_timestamp database default deferrable deferred delete desc detach
distinct do drop each else end escape except exclude exclusive exists explain fail filter first
following for foreign from full generated glob group groups having if ignore immediate in index
indexed initially inner insert instead intersect into is isnull join key last left like limit match
materialized natural no not nothing notnull null nulls of offset on or order others outer over
partition plan pragma preceding primary query raise range recursive references regexp reindex
release rename replace restrict returning right rollback row rows savepoint select set table temp
temporary then ties to transaction trigger unbounded union unique update using vacuum values view
virtual when where window with without
"""
SQLITE_KEYWORDS = frozenset(_SQLITE_KEYWORD_TEXT.split())

_MS_PER_UNIT = {
    "millisecond": 1,
    "second": 1000,
    "minute": 60_000,
    "hour": 3_600_000,
    "day": 86_400_000,
    "week": 7 * 86_400_000,
}
_INTERVAL_PART = re.compile(r"\s*([+-]?\d+(?:\.\d+)?)\s*([a-z]*)\s*", re.IGNORECASE)

# DataFusion's default orderings: ASC puts NULLs last, DESC puts them first.
FIRST_VALUE_FLAGS = {(False, False): 0, (False, True): 1, (True, False): 2, (True, True): 3}


class TranslationError(ValueError):
    """The query cannot be parsed or has no translation (the caller's fault)."""


# DataFusion's grammar is close to PostgreSQL's, and so are its NULL orderings.
READ = "postgres"


@dataclass(frozen=True, slots=True)
class Target:
    """How one store dialect spells what DataFusion means."""

    write: str  # sqlglot's dialect name
    first_value: Callable[[exp.Expression, list[exp.Ordered]], exp.Expression]
    to_timestamp: Callable[[exp.Expression], exp.Expression]
    now: Callable[[], exp.Expression]
    shift: Callable[[exp.Expression, int], exp.Expression] | None  # timestamp + ms; None = native
    finish: Callable[[exp.Expression], exp.Expression]  # last touches: types, quoting


def _sqlite_first_value(value: exp.Expression, order: list[exp.Ordered]) -> exp.Expression:
    args: list[exp.Expression] = [value]
    for o in order:
        desc = bool(o.args.get("desc"))
        nulls_first = o.args.get("nulls_first")
        nulls_first = desc if nulls_first is None else bool(nulls_first)
        args += [o.this, exp.Literal.number(FIRST_VALUE_FLAGS[(desc, nulls_first)])]
    return exp.Anonymous(this="perdure_first_value", expressions=args)


def _postgres_first_value(value: exp.Expression, order: list[exp.Ordered]) -> exp.Expression:
    agg_arg: exp.Expression = exp.Order(this=value, expressions=order) if order else value
    sql = f"(ARRAY_AGG({agg_arg.sql('postgres')}))[1]"
    return cast(exp.Expression, sqlglot.parse_one(sql, read="postgres"))


_UNSIGNED = {
    exp.DataType.Type.UTINYINT: "smallint",
    exp.DataType.Type.USMALLINT: "integer",
    exp.DataType.Type.UMEDIUMINT: "integer",
    exp.DataType.Type.UINT: "bigint",
    exp.DataType.Type.UBIGINT: "numeric",
}


def _sqlite_quoted(node: exp.Expression) -> exp.Expression:
    """Quote identifiers spelled like SQLite keywords (`index` is a column of `sys_journal`)."""
    if isinstance(node, exp.Identifier) and not node.quoted and node.name.lower() in SQLITE_KEYWORDS:
        return exp.Identifier(this=node.name, quoted=True)
    return node


SQLITE = Target(
    write="sqlite",
    first_value=_sqlite_first_value,
    to_timestamp=lambda e: exp.Anonymous(this="perdure_to_timestamp", expressions=[e]),
    now=lambda: exp.Anonymous(this="now", expressions=[]),
    shift=lambda e, ms: exp.Anonymous(this="perdure_ts_add", expressions=[e, exp.Literal.number(ms)]),
    finish=_sqlite_quoted,
)
# The PostgreSQL store's views render timestamps as the same RFC 3339 text as SQLite's.
_PG_TS_TEXT = """to_char(({}) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')"""


def _pg(sql: str) -> exp.Expression:
    return cast(exp.Expression, sqlglot.parse_one(sql, read="postgres"))


def _pg_to_timestamp(e: exp.Expression) -> exp.Expression:
    return _pg(_PG_TS_TEXT.format(f"CAST({e.sql('postgres')} AS TIMESTAMPTZ)"))


def _pg_shift(e: exp.Expression, ms: int) -> exp.Expression:
    ts = f"CAST({e.sql('postgres')} AS TIMESTAMPTZ) + {ms} * INTERVAL '1 millisecond'"
    return _pg(_PG_TS_TEXT.format(ts))


def _postgres_finish(node: exp.Expression) -> exp.Expression:
    """No unsigned integers in PostgreSQL (the next wider signed type), and Restate's
    `information_schema` is the query session's `pg_temp` tables there."""
    if isinstance(node, exp.DataType) and node.this in _UNSIGNED:
        return exp.DataType.build(_UNSIGNED[node.this])
    if isinstance(node, exp.Table) and node.db.lower() == "information_schema":
        node.set("db", exp.to_identifier("pg_temp"))
    return node


POSTGRES = Target(
    write="postgres",
    first_value=_postgres_first_value,
    to_timestamp=_pg_to_timestamp,
    now=lambda: _pg(_PG_TS_TEXT.format("CURRENT_TIMESTAMP")),
    shift=_pg_shift,
    finish=_postgres_finish,
)
_BY_NAME = {"sqlite": SQLITE, "postgres": POSTGRES}


def translate(sql: str, target: str = "sqlite") -> str:
    """One DataFusion statement as `target` SQL ("sqlite" or "postgres")."""
    if target not in _BY_NAME:
        raise ValueError(f"unknown SQL target {target!r}; expected one of {TARGETS}")
    tgt = _BY_NAME[target]
    tree = _parse(sql)
    tree = normalize_identifiers(tree, dialect=READ)
    _name_projections(tree)
    tree = tree.transform(lambda node: _rewrite(node, tgt))
    if tgt.shift is not None:
        shift = tgt.shift
        tree = tree.transform(
            lambda node: _shift(node, shift) if isinstance(node, exp.Add | exp.Sub) else node
        )
    tree = tree.transform(tgt.finish)
    _alias_derived_tables(tree)
    try:
        return tree.sql(dialect=tgt.write, unsupported_level=sqlglot.ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise TranslationError(f"unsupported SQL: {exc}") from None


def _parse(sql: str) -> exp.Expression:
    try:
        statements = [s for s in sqlglot.parse(sql, read=READ) if s is not None]
    except ParseError as exc:
        raise TranslationError(_parse_message(exc)) from None
    except SqlglotError as exc:
        raise TranslationError(str(exc)) from None
    if len(statements) != 1:
        raise TranslationError("send one SQL statement per query")
    stmt = statements[0]
    if isinstance(stmt, exp.Alias | exp.Column | exp.Identifier | exp.Literal):
        raise TranslationError(f"syntax error: expected a query (SELECT ...), not {sql.strip()!r}")
    if not isinstance(stmt, exp.Query):
        raise TranslationError("only read-only queries (SELECT) are allowed")
    return cast(exp.Expression, stmt)


def _parse_message(exc: ParseError) -> str:
    if not exc.errors:
        return str(exc)
    first = exc.errors[0]
    where = f" at line {first.get('line')}, column {first.get('col')}" if first.get("line") else ""
    near = f" near {first['highlight']!r}" if first.get("highlight") else ""
    return f"{first.get('description', 'syntax error')}{near}{where}"


def _rewrite(node: exp.Expression, tgt: Target) -> exp.Expression:
    if isinstance(node, exp.FirstValue | exp.LastValue) and not isinstance(node.parent, exp.Window):
        return _first_value_aggregate(node, tgt)
    if isinstance(node, exp.UnixToTime):  # how the reader spells to_timestamp(x)
        return tgt.to_timestamp(node.this)
    if isinstance(node, exp.StrToTime):
        raise TranslationError("to_timestamp with a format is not supported; give one argument")
    if isinstance(node, exp.CurrentTimestamp) or (
        isinstance(node, exp.Anonymous) and str(node.this).lower() == "now"
    ):
        return tgt.now()
    return node


def _first_value_aggregate(node: exp.Expression, tgt: Target) -> exp.Expression:
    arg = node.this
    order: list[exp.Ordered] = []
    if isinstance(arg, exp.Order):
        order = list(arg.expressions)
        arg = arg.this
    if isinstance(node, exp.LastValue):
        order = [_reversed(o) for o in order]
    return tgt.first_value(arg, order)


def _reversed(o: exp.Ordered) -> exp.Ordered:
    desc = bool(o.args.get("desc"))
    nulls_first = o.args.get("nulls_first")
    nulls_first = desc if nulls_first is None else bool(nulls_first)
    return exp.Ordered(this=o.this, desc=not desc, nulls_first=not nulls_first)


def _shift(node: exp.Add | exp.Sub, shift: Callable[[exp.Expression, int], exp.Expression]) -> exp.Expression:
    left, right = node.this, node.expression
    sign = -1 if isinstance(node, exp.Sub) else 1
    if isinstance(right, exp.Interval):
        return shift(left, sign * interval_ms(right))
    if isinstance(left, exp.Interval) and isinstance(node, exp.Add):
        return shift(right, interval_ms(left))
    return node


def interval_ms(interval: exp.Interval) -> int:
    """Milliseconds of `INTERVAL '1' HOUR`, `INTERVAL '90 minutes'`, `INTERVAL '1 day 2 hours'`."""
    text = interval.this.name if isinstance(interval.this, exp.Literal) else interval.this.sql()
    unit = interval.args.get("unit")
    if unit is not None:
        text = f"{text} {unit.name}"
    total, pos = 0.0, 0
    while pos < len(text):
        m = _INTERVAL_PART.match(text, pos)
        if m is None or m.end() == pos:
            raise TranslationError(f"cannot read the interval {text!r}")
        total += float(m.group(1)) * _unit_ms(m.group(2), text)
        pos = m.end()
    return round(total)


def _unit_ms(unit: str, text: str) -> int:
    name = unit.lower().rstrip("s") or "second"
    name = {"m": "minute", "min": "minute", "h": "hour", "d": "day", "ms": "millisecond"}.get(name, name)
    if name == "millisecond" or unit.lower() == "ms":
        return 1
    if name not in _MS_PER_UNIT:
        raise TranslationError(f"unsupported interval unit in {text!r} (months and years vary in length)")
    return _MS_PER_UNIT[name]


def _alias_derived_tables(tree: exp.Expression) -> None:
    """Give every unaliased subquery in FROM/JOIN the alias of the table it reads (or a fresh one)."""
    fresh = 0
    for sub in list(tree.find_all(exp.Subquery)):
        if sub.alias or not isinstance(sub.parent, exp.From | exp.Join):
            continue
        inner = sub.this
        name = None
        if isinstance(inner, exp.Select):
            source = inner.args.get("from_") or inner.args.get("from")
            table = source.this if isinstance(source, exp.From) else None
            if isinstance(table, exp.Table):
                name = table.alias_or_name
        if not name:
            fresh += 1
            name = f"_subquery_{fresh}"
        sub.set("alias", exp.TableAlias(this=exp.to_identifier(name)))


# ---------------------------------------------------------------- DataFusion's column names

_BINARY: dict[type[exp.Expr], str] = {
    exp.Add: "+",
    exp.Sub: "-",
    exp.Mul: "*",
    exp.Div: "/",
    exp.EQ: "=",
    exp.NEQ: "!=",
    exp.GT: ">",
    exp.GTE: ">=",
    exp.LT: "<",
    exp.LTE: "<=",
    exp.And: "AND",
    exp.Or: "OR",
}


def _name_projections(tree: exp.Expression) -> None:
    """Alias each unaliased computed column of the outermost SELECTs as DataFusion names it
    (`count(*)`, `count(Int64(1))`, `max(sys_invocation.journal_size)`), so result columns have
    the names Restate gives them."""
    for select in _outer_selects(tree):
        table = _single_table(select)
        select.set(
            "expressions",
            [
                e
                if isinstance(e, exp.Alias | exp.Column | exp.Star)
                else exp.alias_(e, _df_name(e, table), quoted=True)
                for e in select.expressions
            ],
        )


def _outer_selects(tree: exp.Expression) -> list[exp.Select]:
    if isinstance(tree, exp.Select):
        return [tree]
    if isinstance(tree, exp.SetOperation):
        return _outer_selects(tree.this)  # the first branch names the columns
    if isinstance(tree, exp.Subquery | exp.Paren):
        return _outer_selects(tree.this)
    return []


def _single_table(select: exp.Select) -> str | None:
    source = select.args.get("from_") or select.args.get("from")
    if select.args.get("joins") or not isinstance(source, exp.From):
        return None
    return source.this.alias_or_name if isinstance(source.this, exp.Table) else None


def _df_name(e: exp.Expr, table: str | None) -> str:
    if isinstance(e, exp.Column):
        qualifier = e.table or table
        return f"{qualifier}.{e.name}" if qualifier else e.name
    if isinstance(e, exp.Star):
        return "*"
    if isinstance(e, exp.Literal):
        if e.is_string:
            return f'Utf8("{e.this}")'
        return f"Int64({e.this})" if e.is_int else f"Float64({e.this})"
    if isinstance(e, exp.Null):
        return "NULL"
    if isinstance(e, exp.Boolean):
        return f"Boolean({str(e.this).lower()})"
    if isinstance(e, exp.Paren):
        return _df_name(e.this, table)
    op = _BINARY.get(type(e))
    if op is not None and isinstance(e, exp.Binary):
        return f"{_df_name(e.left, table)} {op} {_df_name(e.right, table)}"
    if isinstance(e, exp.Func):
        name = e.this if isinstance(e, exp.Anonymous) else e.sql_name()
        args = [a for key in e.arg_types for a in _as_list(e.args.get(key)) if isinstance(a, exp.Expression)]
        if isinstance(e, exp.Anonymous):
            args = list(e.expressions)
        return f"{str(name).lower()}({', '.join(_df_name(a, table) for a in args)})"
    return e.sql(dialect=READ)


def _as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else [value]
