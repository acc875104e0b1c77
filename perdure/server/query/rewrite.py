"""DataFusion SQL (what Restate runs, and what the `restate` CLI sends) to
SQLite (and, by `to_postgres`, to PostgreSQL): the few spellings that differ,
rewritten token by token so string literals, quoted identifiers and comments are never touched.

- `index` is reserved in SQLite but a column of `sys_journal`: a bare `index`
  becomes the quoted identifier `"index"`.
- `ILIKE` becomes `LIKE` (SQLite's LIKE already ignores ASCII case).
- A subquery in FROM without an alias takes the alias of the table it reads:
  DataFusion lets the outer query use it, and the CLI does
  (`FROM (SELECT * FROM sys_invocation inv LIMIT 50000) WHERE inv.target_service_name = ...`).
`information_schema.columns` needs no rewrite: the engine attaches a schema
of that name."""

from __future__ import annotations

import re

# A string literal, a quoted identifier, a comment, a word, a parenthesis, or
# anything else up to the next token of interest.
_TOKEN = re.compile(
    r"""
    (?P<skip>'(?:[^']|'')*'            # 'string' with '' escapes
      | "(?:[^"]|"")*"                 # "identifier"
      | `[^`]*`                        # `identifier`
      | --[^\n]*                       # -- comment
      | /\*.*?(?:\*/|\Z)               # /* comment */
    )
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<space>\s+)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_WORDS = {"index": '"index"', "ilike": "LIKE"}

# Words that may follow a FROM item and are not its alias.
_NOT_ALIAS = frozenset(
    [
        "where",
        "group",
        "order",
        "limit",
        "offset",
        "join",
        "inner",
        "left",
        "right",
        "full",
        "cross",
        "natural",
        "on",
        "using",
        "union",
        "except",
        "intersect",
        "having",
        "window",
        "as",
    ]
)


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) pairs covering `sql` exactly."""
    out = []
    for m in _TOKEN.finditer(sql):
        kind = m.lastgroup
        assert kind is not None
        out.append((kind, m.group(0)))
    return out


def _next_significant(tokens: list[tuple[str, str]], i: int) -> int:
    while (
        i < len(tokens) and tokens[i][0] in ("space", "skip") and not tokens[i][1].startswith(("'", '"', "`"))
    ):
        i += 1
    return i


def _closing(tokens: list[tuple[str, str]], open_at: int) -> int | None:
    depth = 0
    for j in range(open_at, len(tokens)):
        text = tokens[j][1]
        if tokens[j][0] == "other" and text == "(":
            depth += 1
        elif tokens[j][0] == "other" and text == ")":
            depth -= 1
            if depth == 0:
                return j
    return None


def _inner_alias(tokens: list[tuple[str, str]], start: int, end: int) -> str | None:
    """The alias of the table read by the subquery tokens[start:end] (`FROM t alias`), at its top level."""
    depth = 0
    for j in range(start, end):
        kind, text = tokens[j]
        if kind == "other" and text in "()":
            depth += 1 if text == "(" else -1
        elif depth == 0 and kind == "word" and text.lower() == "from":
            table = _next_significant(tokens, j + 1)
            if table >= end or tokens[table][0] != "word":
                return None
            alias = _next_significant(tokens, table + 1)
            if alias < end and tokens[alias][0] == "word" and tokens[alias][1].lower() == "as":
                alias = _next_significant(tokens, alias + 1)
            if alias < end and tokens[alias][0] == "word" and tokens[alias][1].lower() not in _NOT_ALIAS:
                return tokens[alias][1]
            return None
    return None


def _alias_subqueries(tokens: list[tuple[str, str]]) -> list[tuple[str, str]]:
    out = list(tokens)
    inserts: list[tuple[int, str]] = []
    for i, (kind, text) in enumerate(tokens):
        if kind != "word" or text.lower() != "from":
            continue
        paren = _next_significant(tokens, i + 1)
        if paren >= len(tokens) or tokens[paren] != ("other", "("):
            continue
        close = _closing(tokens, paren)
        if close is None:
            continue
        after = _next_significant(tokens, close + 1)
        if after < len(tokens) and tokens[after][0] == "word" and tokens[after][1].lower() not in _NOT_ALIAS:
            continue  # already aliased
        if after < len(tokens) and tokens[after][0] == "word" and tokens[after][1].lower() == "as":
            continue
        alias = _inner_alias(tokens, paren + 1, close)
        if alias is not None:
            inserts.append((close + 1, alias))
    for at, alias in reversed(inserts):
        out[at:at] = [("space", " "), ("word", alias)]
    return out


def _rewrite(sql: str, words: dict[str, str]) -> str:
    tokens = _alias_subqueries(_tokens(sql))
    parts = []
    for kind, text in tokens:
        parts.append(words.get(text.lower(), text) if kind == "word" else text)
    return "".join(parts)


def to_sqlite(sql: str) -> str:
    return _rewrite(sql, _WORDS)


# PostgreSQL has ILIKE and a non-reserved `index`; its own information_schema is
# PostgreSQL's, so Restate's (temp tables of the query session) is `pg_temp`.
_PG_WORDS = {"information_schema": "pg_temp"}


def to_postgres(sql: str) -> str:
    """DataFusion SQL to PostgreSQL (the same token rewrite, PostgreSQL's spellings)."""
    return _rewrite(sql, _PG_WORDS)
