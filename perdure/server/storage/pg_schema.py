"""PostgreSQL schema: numbered migrations (`migrations/NNNN_name.sql`) applied in
order, each once, recorded in `schema_migration`. Concurrent nodes starting on
one database serialize on an advisory lock, then an exclusive lock of that table, so a migration runs
exactly once; a database from a newer Perdure (unknown migrations) is refused."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaError(Exception):
    """The database's schema is not one this Perdure can use."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every shipped migration, by version; versions are 1, 2, ... without gaps."""
    folder = resources.files("perdure.server.storage").joinpath("migrations")
    found: list[Migration] = []
    for entry in folder.iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), entry.name, entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    assert versions == list(range(1, len(found) + 1)), f"migration versions must be 1..N, got {versions}"
    return found


def migrate(conn: psycopg.Connection[tuple[Any, ...]]) -> int:
    """Bring the schema up to date; returns the version it is at."""
    shipped = migrations()
    with conn.transaction():
        # Nodes started together race on creating the table itself (IF NOT EXISTS is not atomic
        # against a concurrent CREATE): a transaction-scoped advisory lock serializes them first
        # (start-up only, never on the write path).
        conn.execute("SELECT pg_advisory_xact_lock(7415001)")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migration "
            "(version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("LOCK TABLE schema_migration IN EXCLUSIVE MODE")
        rows = conn.execute("SELECT version FROM schema_migration").fetchall()
        applied = {int(r[0]) for r in rows}
        unknown = applied - {m.version for m in shipped}
        if unknown:
            raise SchemaError(
                f"the database has schema migrations {sorted(unknown)} that this Perdure does not know; "
                "it was created by a newer version"
            )
        for mig in shipped:
            if mig.version not in applied:
                conn.execute(mig.sql.encode())
                conn.execute(
                    "INSERT INTO schema_migration (version, name) VALUES (%s, %s)", (mig.version, mig.name)
                )
    return len(shipped)
