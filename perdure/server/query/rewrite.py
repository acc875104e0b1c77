"""DataFusion SQL (what Restate runs, and what the `restate` CLI sends) to
SQLite: the few spellings that differ, rewritten token by token so string
literals, quoted identifiers and comments are never touched.

- `index` is reserved in SQLite but a column of `sys_journal`: a bare `index`
  becomes the quoted identifier `"index"`.
- `ILIKE` becomes `LIKE` (SQLite's LIKE already ignores ASCII case).
`information_schema.columns` needs no rewrite: the engine attaches a schema
of that name."""

from __future__ import annotations

import re

# A string literal, a quoted identifier, a comment, or a word; anything else passes through.
_TOKEN = re.compile(
    r"""
    (?P<skip>'(?:[^']|'')*'            # 'string' with '' escapes
      | "(?:[^"]|"")*"                 # "identifier"
      | `[^`]*`                        # `identifier`
      | --[^\n]*                       # -- comment
      | /\*.*?(?:\*/|\Z)               # /* comment */
    )
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    """,
    re.VERBOSE | re.DOTALL,
)

_WORDS = {"index": '"index"', "ilike": "LIKE"}


def to_sqlite(sql: str) -> str:
    def replace(m: re.Match[str]) -> str:
        word = m.group("word")
        if word is None:
            return m.group(0)
        return _WORDS.get(word.lower(), word)

    return _TOKEN.sub(replace, sql)
