"""The SQLite data directory's schema version and its upgrades.

`meta.schema_version` says which layout a store has. Version 1 keyed the invocation rows and the
journal by the (random) invocation id; version 2 stores them in insertion order; version 3 makes
the state, promise, schedule and limit rule tables rowid tables like those two (schema.sql says
why). Opening an older store upgrades it in one transaction before anything else reads it (a
version 1 store goes through both steps in that one transaction); a store newer than this code
is refused rather than misread."""

from __future__ import annotations

import logging
import sqlite3
import time

from perdure.server.storage.interface import StorageError

log = logging.getLogger("perdure.storage")

SCHEMA_VERSION = 3

# Version 1 -> 2: the old tables are renamed, the new ones created by the schema script, the rows
# copied (invocations in creation order, so history keeps its insertion order; journal rows of a
# record that no longer exists are dropped), the old tables dropped. Their pages go to the free
# list, which the incremental vacuum (`SqliteStorage.reclaim`) hands back in steps.
_V1_BEFORE = """
DROP INDEX IF EXISTS invocation_status;
DROP INDEX IF EXISTS invocation_expiry;
ALTER TABLE invocation RENAME TO invocation_v1;
ALTER TABLE journal RENAME TO journal_v1;
"""
_V1_AFTER = """
INSERT INTO invocation (id, status, service, key, created_at, expires_at, record)
  SELECT id, status, service, key, created_at, expires_at, record FROM invocation_v1
  ORDER BY created_at, id;
INSERT INTO journal (inv, idx, type, body, appended_at)
  SELECT i.seq, j.idx, j.type, j.body, j.appended_at
  FROM invocation i JOIN journal_v1 j ON j.id = i.id ORDER BY i.seq, j.idx;
DROP TABLE journal_v1;
DROP TABLE invocation_v1;
"""

# Version 2 -> 3: each table that holds user-sized values, renamed, made again by the schema script
# as a rowid table, its rows copied in key order, the old table dropped. A table the store lacks
# (a version 1 store made before schedules or limits existed) is only created.
_V3_ROWID = {
    "state": "service, key, skey, value",
    "promise": "service, key, name, record",
    "schedule": "name, record",
    "limit_rule": "pattern, record, tat",
}


def _v3_steps(tables: set[str]) -> tuple[str, str]:
    moved = [t for t in _V3_ROWID if t in tables]
    before = "".join(f"ALTER TABLE {t} RENAME TO {t}_v2;\n" for t in moved)
    after = "".join(
        f"INSERT INTO {t} ({_V3_ROWID[t]}) SELECT {_V3_ROWID[t]} FROM {t}_v2;\nDROP TABLE {t}_v2;\n"
        for t in moved
    )
    return before, after


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}


def stored_version(conn: sqlite3.Connection) -> int | None:
    """The store's schema version; None for a new (empty) database.

    Version 1 wrote no version row. Neither did a version 2 store created by code before the
    creation became one transaction and cut by a power loss between its tables and the row: its
    `invocation` table has the `seq` column, so it is version 2 (and is upgraded; the upgrade
    creates the tables the cut left out). A version 3 store always has its row: it is created
    in the same transaction as the tables."""
    tables = _tables(conn)
    if "meta" not in tables:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is not None:
        return int(bytes(row[0]).decode())
    if "invocation" not in tables:
        return None
    columns = {r[1] for r in conn.execute("PRAGMA table_info(invocation)")}
    return 2 if "seq" in columns else 1


_SET_VERSION = (
    f"INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', CAST('{SCHEMA_VERSION}' AS BLOB));"
)


def upgrade(conn: sqlite3.Connection, schema: str) -> None:
    """Create the schema of a new store, or bring an older one to `SCHEMA_VERSION` (one
    transaction: an interrupted upgrade leaves the old store as it was)."""
    version = stored_version(conn)
    if version is not None and version > SCHEMA_VERSION:
        raise StorageError(
            f"the data directory has schema version {version}; this Perdure reads up to {SCHEMA_VERSION}"
        )
    if version is None or version == SCHEMA_VERSION:
        # One transaction: a power loss while a new store is made leaves no tables or all of them
        # with their version row (the statements one by one left tables without the version,
        # which the next start read as version 1).
        _in_one_transaction(conn, f"BEGIN IMMEDIATE;\n{schema}\n{_SET_VERSION}\nCOMMIT;")
        return
    started = time.monotonic()
    rows = conn.execute("SELECT count(*) FROM invocation").fetchone()[0]
    log.warning(
        "upgrading the store from schema version %d to %d (%d invocations)", version, SCHEMA_VERSION, rows
    )
    before, after = _v3_steps(_tables(conn))
    if version == 1:  # both steps: the schema script in between makes the version 3 tables
        before, after = _V1_BEFORE + before, _V1_AFTER + after
    script = f"BEGIN IMMEDIATE;\n{before}\n{schema}\n{after}\n{_SET_VERSION}\nCOMMIT;"
    _in_one_transaction(conn, script)
    log.warning("store upgraded to schema version %d in %.1f s", SCHEMA_VERSION, time.monotonic() - started)


def _in_one_transaction(conn: sqlite3.Connection, script: str) -> None:
    """Run a BEGIN ... COMMIT script; on an error nothing of it stays."""
    try:
        conn.executescript(script)
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
