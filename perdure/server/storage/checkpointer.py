"""WAL checkpoints off the commit path.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past
its threshold, so after a big write (a 30 MB input, output or state value) one
unlucky commit copies the whole WAL into the database and fsyncs it while every
caller of that batch waits. Here the writer connection has automatic
checkpoints off; after each commit it reports how much it wrote, and once a
threshold has accumulated, a PASSIVE checkpoint runs on a connection and thread
of its own (it never blocks the writer). `journal_size_limit` then truncates a
WAL that a big write inflated, so the disk space comes back.

Durability is unchanged: a checkpoint only copies committed frames, and with
synchronous=FULL it fsyncs the database before the WAL is reused."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

log = logging.getLogger("perdure.storage")

CHECKPOINT_AFTER_BYTES = 4 << 20  # about SQLite's default of 1,000 pages
WAL_SIZE_LIMIT_BYTES = 64 << 20  # what a reset WAL is truncated to


class WalCheckpointer:
    def __init__(
        self, connect: Callable[[], sqlite3.Connection], *, after_bytes: int = CHECKPOINT_AFTER_BYTES
    ) -> None:
        self._connect = connect
        self._after_bytes = after_bytes
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="perdure-sqlite-checkpoint")
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._written = 0
        self._pending: Future[None] | None = None
        self.checkpoints = 0

    def written(self, nbytes: int) -> None:
        """Called by the writer thread after each commit."""
        with self._lock:
            self._written += nbytes
            if self._written < self._after_bytes or self._pending is not None:
                return
            self._written = 0
            self._pending = self._executor.submit(self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._conn is None:
                self._conn = self._connect()
                self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error:
            # A failed checkpoint loses nothing (the frames stay in the WAL); the next one retries.
            log.warning("WAL checkpoint failed", exc_info=True)
        finally:
            with self._lock:
                self._pending = None

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
