"""WAL checkpoints off the commit path.

SQLite's automatic checkpoint runs inside the COMMIT that pushes the WAL past
its threshold, so after a big write (a 30 MB input, output or state value) one
unlucky commit copies the whole WAL into the database and fsyncs it while every
caller of that batch waits. Here the writer connection has automatic
checkpoints off; after each commit it reports how much it wrote, and once a
threshold has accumulated, a PASSIVE checkpoint runs on a connection and thread
of its own (it never blocks the writer). `journal_size_limit` then truncates a
WAL that a big write inflated, so the disk space comes back.

A background checkpoint alone never lets the WAL start over under steady load:
SQLite restarts the WAL only when a write begins after *every* frame was copied,
and commits keep appending frames while the background pass runs. The WAL then
grows without end (260 MB for a 5 MB database after 5,000 invocations), every
write appends to new file blocks (the kernel zeroes each one: 7% of the
server's CPU) and the WAL index readers search grows with it. So once a
background pass has finished, the writer copies the few frames committed
meanwhile itself, between two commits (`catch_up`): cheap, since the bulk is
already in the database, and the next commit starts the WAL from its beginning.

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
# A commit writes whole pages (each row touched dirties a 4 KiB page), far more than its bytes:
# checkpoint after this many commits too.
CHECKPOINT_AFTER_COMMITS = 64
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
        self._commits = 0
        self._pending: Future[None] | None = None
        self._catch_up = False
        self.checkpoints = 0
        self.catch_ups = 0

    def written(self, nbytes: int) -> bool:
        """Called by the writer thread after each commit; True when the writer should now copy
        the frames committed since the last background pass (`catch_up`)."""
        with self._lock:
            if self._catch_up:
                self._catch_up = False
                return True
            self._written += nbytes
            self._commits += 1
            due = self._written >= self._after_bytes or self._commits >= CHECKPOINT_AFTER_COMMITS
            if not due or self._pending is not None:
                return False
            self._written = 0
            self._commits = 0
            self._pending = self._executor.submit(self._checkpoint)
            return False

    def catch_up(self, writer: sqlite3.Connection) -> None:
        """On the writer thread, between commits: finish what the background pass left."""
        try:
            writer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.catch_ups += 1
        except sqlite3.Error:
            log.warning("WAL catch-up checkpoint failed", exc_info=True)

    def _checkpoint(self) -> None:
        done = False
        try:
            if self._conn is None:
                self._conn = self._connect()
                self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self.checkpoints += 1
            done = True
        except sqlite3.Error:
            # A failed checkpoint loses nothing (the frames stay in the WAL); the next one retries.
            log.warning("WAL checkpoint failed", exc_info=True)
        finally:
            with self._lock:
                self._pending = None
                self._catch_up = done

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
