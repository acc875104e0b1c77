"""SQLite backend: WAL, synchronous=FULL, one writer connection on a dedicated
thread (commits off the event loop), a reader connection for the processor.

Every `commit_batch` is one transaction; with synchronous=FULL the WAL is
fsync'd at COMMIT, so the batch is durable when the call returns."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections import defaultdict
from collections.abc import Callable
from importlib import resources
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from typing import TypeVar

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import (
    INVOKED,
    PAUSED,
    Entry,
    Invocation,
    decode_record,
)
from perdure.server.storage.checkpointer import WAL_SIZE_LIMIT_BYTES, WalCheckpointer
from perdure.server.storage.interface import BackupPace, StorageError
from perdure.server.storage.sqlite_backup import copy_database
from perdure.server.storage.sqlite_layout import upgrade
from perdure.server.storage.writer_thread import WriterThread

T = TypeVar("T")

_OP_SQL = {
    # Rowid tables (schema.sql): an UPSERT on the key updates the row in place.
    Op.STATE_SET: "INSERT INTO state (service, key, skey, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (service, key, skey) DO UPDATE SET value = excluded.value",
    Op.STATE_DELETE: "DELETE FROM state WHERE service = ? AND key = ? AND skey = ?",
    Op.STATE_CLEAR: "DELETE FROM state WHERE service = ? AND key = ?",
    Op.LOCK_SET: "INSERT OR REPLACE INTO lock (service, key, id) VALUES (?, ?, ?)",
    Op.LOCK_DELETE: "DELETE FROM lock WHERE service = ? AND key = ?",
    Op.INBOX_ADD: "INSERT INTO inbox (service, key, seq, id) VALUES (?, ?, ?, ?)",
    Op.INBOX_DELETE: "DELETE FROM inbox WHERE service = ? AND key = ? AND seq = ?",
    Op.PROMISE_PUT: "INSERT INTO promise (service, key, name, record) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (service, key, name) DO UPDATE SET record = excluded.record",
    Op.PROMISE_CLEAR: "DELETE FROM promise WHERE service = ? AND key = ?",
    Op.RULE_PUT: "INSERT INTO limit_rule (pattern, record) VALUES (?, ?) "
    "ON CONFLICT (pattern) DO UPDATE SET record = excluded.record",
    Op.RULE_DELETE: "DELETE FROM limit_rule WHERE pattern = ?",
    Op.RULE_TAT: "UPDATE limit_rule SET tat = ?2 WHERE pattern = ?1",
    Op.LIMIT_PUT: "INSERT OR REPLACE INTO limit_entry (id, seq, running, service, handler, key) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    Op.LIMIT_DELETE: "DELETE FROM limit_entry WHERE id = ?",
    Op.SCHEDULE_PUT: "INSERT INTO schedule (name, record) VALUES (?, ?) "
    "ON CONFLICT (name) DO UPDATE SET record = excluded.record",
    Op.SCHEDULE_DELETE: "DELETE FROM schedule WHERE name = ?",
    Op.DEDUP_SET: "INSERT OR REPLACE INTO dedup (producer, seq) VALUES (?, ?)",
}

log = logging.getLogger("perdure.storage")

_AUTO_VACUUM_INCREMENTAL = 2
CONVERT_PAGES_MAX = 262_144  # 1 GiB of 4 KiB pages: converting a larger store at start is too slow
DB_FILE = "perdure.sqlite3"


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA busy_timeout=10000")
    return conn


# `model.record_expires_at_ms` in SQL, over the record JSON (?2): the journal retention while the
# journal is kept and ends first, else the completion retention; NULL while not completed.
_EXPIRES_AT_SQL = (
    "CASE WHEN json_extract(?2, '$.status') = 'completed' THEN json_extract(?2, '$.ca') + "
    "CASE WHEN json_extract(?2, '$.jl') > 0 AND json_extract(?2, '$.jr') < json_extract(?2, '$.cr') "
    "THEN json_extract(?2, '$.jr') ELSE json_extract(?2, '$.cr') END END"
)


_UPSERT_INDEXED = (
    "INSERT INTO invocation (id, status, service, key, created_at, expires_at, record) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
    "expires_at = excluded.expires_at, record = excluded.record"
)


# The journal is keyed by its invocation's `seq` (schema.sql): an id is looked up in the id index.
_SEQ_OF = "(SELECT seq FROM invocation WHERE id = ?1)"
_JOURNAL_INSERT = (
    f"INSERT INTO journal (inv, idx, type, body, appended_at) VALUES ({_SEQ_OF}, ?2, ?3, ?4, ?5)"
)
_JOURNAL_DELETE = f"DELETE FROM journal WHERE inv = {_SEQ_OF}"


def _batch_bytes(b: WriteBatch) -> int:
    """Roughly what a batch wrote (records and journal bodies dominate)."""
    n = sum(len(v) for v in b.invocations.values() if v is not None)
    n += sum(len(row[3]) for row in b.journal)
    return n + 256 * (len(b.ops) + len(b.timers_add) + len(b.timers_delete)) + 4096


class SqliteStorage:
    """The embedded default store."""

    def __init__(self, data_dir: Path) -> None:
        self._dir = data_dir
        self._path = data_dir / DB_FILE
        self._writer_thread = WriterThread("perdure-sqlite-writer")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._checkpointer = WalCheckpointer(lambda: _connect(self._path))
        # Backups in progress: their read snapshot pins the WAL, so the reclaim step must not
        # wait for a TRUNCATE checkpoint on the writer thread (it would stall commits).
        self._backups = 0
        self._backups_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self._path

    async def open(self) -> None:
        self._dir.mkdir(parents=True, exist_ok=True)
        await self._run(self._open_writer)
        self._reader = _connect(self._path)
        self._reader.execute("PRAGMA query_only=1")

    def _open_writer(self) -> None:
        conn = _connect(self._path)
        # Freed pages go back to the file system in steps (`reclaim`); this takes effect on a new
        # database, and an older one is converted once while it is small enough to do quickly.
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        schema = resources.files("perdure.server.storage").joinpath("schema.sql").read_text()
        upgrade(conn, schema)
        if conn.execute("PRAGMA auto_vacuum").fetchone()[0] != _AUTO_VACUUM_INCREMENTAL:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            if pages <= CONVERT_PAGES_MAX:
                conn.execute("VACUUM")
            else:
                log.warning(
                    "%s predates incremental vacuum; deleted rows' space is reused but not returned to "
                    "the file system until a one-off `VACUUM` (sqlite3 %s 'VACUUM') while stopped",
                    self._path,
                    self._path,
                )
        conn.execute("PRAGMA wal_autocheckpoint=0")  # see checkpointer.py
        conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        self._writer = conn

    async def reclaim(self, pages_max: int) -> int:
        """Give up to `pages_max` free pages back to the file system (SQLite incremental vacuum,
        on the writer thread between commits); returns how many were freed."""
        return await self._run(self._reclaim, pages_max)

    def _reclaim(self, pages_max: int) -> int:
        conn = self._writer
        assert conn is not None and pages_max > 0
        before = conn.execute("PRAGMA freelist_count").fetchone()[0]
        if before == 0:
            return 0
        # executescript steps the pragma to completion (execute() frees one page per step).
        conn.executescript(f"PRAGMA incremental_vacuum({int(pages_max)});")
        after = conn.execute("PRAGMA freelist_count").fetchone()[0]
        with self._backups_lock:
            backing_up = self._backups > 0
        if after == 0 and not backing_up:
            # The file only shrinks when the WAL is checkpointed; the WAL itself is capped.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return int(before - after)

    async def backup(
        self, dest: Path, progress: Callable[[int, int], None], abort: threading.Event, pace: BackupPace
    ) -> tuple[int, int, int]:
        """Copy the database as of now into the new file `dest`, on a thread and connection of
        its own (`sqlite_backup`): commits go on meanwhile. Returns page size, page count and
        schema version of the copy."""
        with self._backups_lock:
            self._backups += 1
        copying = asyncio.get_running_loop().run_in_executor(
            None, copy_database, self._path, dest, progress, abort, pace
        )
        try:
            copied = await asyncio.shield(copying)
        except asyncio.CancelledError:
            abort.set()  # the copy stops at its next step; wait for the thread before going on
            with contextlib.suppress(BaseException):
                await copying
            raise
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite backup: {exc}") from exc
        finally:
            with self._backups_lock:
                self._backups -= 1
        return copied.page_size, copied.page_count, copied.schema_version

    async def close(self) -> None:
        if self._writer is not None:
            await self._run(self._writer.close)
            self._writer = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self._writer_thread.shutdown()
        self._checkpointer.close()

    async def _run(self, fn: Callable[..., T], *args: object) -> T:
        try:
            return await self._writer_thread.run(fn, *args)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite: {exc}") from exc

    # ------------------------------------------------------------------ writes

    async def commit_batch(self, batch: WriteBatch) -> None:
        await self._run(self._commit, batch)

    def _commit(self, b: WriteBatch) -> None:
        conn = self._writer
        assert conn is not None
        if b.outbox:  # one node owns every partition: nothing is ever mailed (see read_mailbox)
            raise StorageError("the SQLite store has no partition mailbox (it is a single node's)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            ex = conn.executemany
            if b.journal_delete:  # before the records: a purged record's journal goes with it
                ex(_JOURNAL_DELETE, [(i,) for i in b.journal_delete])
            if b.invocations:
                indexed = [
                    (k, i.status, i.service, i.key, i.created_at_ms, i.expires_at_ms, v)
                    for k, v in b.invocations.items()
                    if v is not None and (i := b.index.get(k)) is not None
                ]
                upserts = [(k, v) for k, v in b.invocations.items() if v is not None and k not in b.index]
                deletes = [(k,) for k, v in b.invocations.items() if v is None]
                if indexed:  # the columns from the processor: a big record is never parsed here
                    ex(
                        _UPSERT_INDEXED,
                        indexed,
                    )
                if upserts:
                    ex(
                        "INSERT INTO invocation (id, status, service, key, created_at, expires_at, record) "
                        "VALUES (?1, json_extract(?2, '$.status'), json_extract(?2, '$.s'), "
                        "json_extract(?2, '$.k'), json_extract(?2, '$.c'), "
                        f"{_EXPIRES_AT_SQL}, ?2) "
                        "ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
                        "expires_at = excluded.expires_at, record = excluded.record",
                        upserts,
                    )
                if deletes:
                    ex(_JOURNAL_DELETE, deletes)  # never left behind for a reused `seq`
                    ex("DELETE FROM invocation WHERE id = ?", deletes)
            if b.journal:  # after the records: a new invocation's row gives its journal its `seq`
                ex(_JOURNAL_INSERT, b.journal)
            if b.timers_delete:
                ex(
                    "DELETE FROM timer WHERE wake_at = ? AND id = ? AND kind = ? AND arg = ?",
                    [(t.wake_at_ms, t.invocation, t.kind, t.arg) for t in b.timers_delete],
                )
            if b.timers_add:
                ex(
                    "INSERT OR IGNORE INTO timer (wake_at, id, kind, arg) VALUES (?, ?, ?, ?)",
                    [(t.wake_at_ms, t.invocation, t.kind, t.arg) for t in b.timers_add],
                )
            # Keyed operations strictly in order; runs of one kind go as one executemany.
            for kind, group in groupby(b.ops, key=itemgetter(0)):
                ex(_OP_SQL[kind], [args for _, args in group])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if self._checkpointer.written(_batch_bytes(b)):
            self._checkpointer.catch_up(conn)

    async def get_meta(self, key: str) -> bytes | None:
        return await self._run(self._get_meta, key)

    def _get_meta(self, key: str) -> bytes | None:
        assert self._writer is not None
        row = self._writer.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else bytes(row[0])

    async def put_meta(self, key: str, value: bytes) -> None:
        await self._run(self._put_meta, key, value)

    def _put_meta(self, key: str, value: bytes) -> None:
        assert self._writer is not None
        self._writer.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ------------------------------------------------------------------ reads

    def _r(self) -> sqlite3.Connection:
        assert self._reader is not None
        return self._reader

    def get_invocation(self, raw_id: bytes) -> Invocation | None:
        row = self._r().execute("SELECT record FROM invocation WHERE id = ?", (raw_id,)).fetchone()
        return None if row is None else decode_record(raw_id, row[0])

    def get_journal(self, raw_id: bytes) -> list[Entry]:
        rows = (
            self._r()
            .execute(
                f"SELECT type, body, appended_at FROM journal WHERE inv = {_SEQ_OF} ORDER BY idx", (raw_id,)
            )
            .fetchall()
        )
        return [Entry(t, bytes(b), a) for t, b, a in rows]

    def get_state(self, service: str, key: str) -> dict[bytes, bytes]:
        rows = (
            self._r()
            .execute("SELECT skey, value FROM state WHERE service = ? AND key = ?", (service, key))
            .fetchall()
        )
        return {bytes(k): bytes(v) for k, v in rows}

    def get_promise(self, service: str, key: str, name: str) -> bytes | None:
        row = (
            self._r()
            .execute(
                "SELECT record FROM promise WHERE service = ? AND key = ? AND name = ?", (service, key, name)
            )
            .fetchone()
        )
        return None if row is None else bytes(row[0])

    def read_mailbox(self, partitions: list[int], limit: int) -> list[tuple[int, int, bytes]]:
        return []  # a single node: every partition is local, no message waits for another

    def get_dedup(self, producer: str) -> int | None:
        row = self._r().execute("SELECT seq FROM dedup WHERE producer = ?", (producer,)).fetchone()
        return None if row is None else int(row[0])

    def expired(self, now_ms: int, limit: int) -> list[bytes]:
        rows = (
            self._r()
            .execute(
                "SELECT id FROM invocation WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
                (now_ms, limit),
            )
            .fetchall()
        )
        return [bytes(r[0]) for r in rows]

    def load_running(self) -> list[Invocation]:
        rows = (
            self._r()
            .execute("SELECT id, record FROM invocation WHERE status IN (?, ?)", (INVOKED, PAUSED))
            .fetchall()
        )
        out = []
        for raw_id, rec in rows:
            inv = decode_record(bytes(raw_id), rec)
            inv.journal = self.get_journal(bytes(raw_id))
            out.append(inv)
        return out

    def load_locks(self) -> dict[tuple[str, str], bytes]:
        rows = self._r().execute("SELECT service, key, id FROM lock").fetchall()
        return {(s, k): bytes(i) for s, k, i in rows}

    def load_inbox(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        out: dict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
        for s, k, seq, i in self._r().execute(
            "SELECT service, key, seq, id FROM inbox ORDER BY service, key, seq"
        ):
            out[(s, k)].append((seq, bytes(i)))
        return dict(out)

    def load_limits(
        self,
    ) -> tuple[list[tuple[str, bytes, int]], list[tuple[bytes, int, int, str, str, str | None]]]:
        r = self._r()
        rules = [
            (p, bytes(rec), tat) for p, rec, tat in r.execute("SELECT pattern, record, tat FROM limit_rule")
        ]
        entries = [
            (bytes(i), seq, running, s, h, k)
            for i, seq, running, s, h, k in r.execute(
                "SELECT id, seq, running, service, handler, key FROM limit_entry ORDER BY seq"
            )
        ]
        return rules, entries

    def load_schedules(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._r().execute("SELECT record FROM schedule ORDER BY name")]

    def load_timers(self, limit: int) -> list[Timer]:
        rows = (
            self._r()
            .execute("SELECT wake_at, id, kind, arg FROM timer ORDER BY wake_at LIMIT ?", (limit,))
            .fetchall()
        )
        return [Timer(w, bytes(i), k, a) for w, i, k, a in rows]
