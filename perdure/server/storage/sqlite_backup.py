"""A consistent copy of the live SQLite database, taken while the server commits.

A connection of its own opens a read transaction (in WAL mode a reader never blocks the writer,
and the writer never disturbs the reader's snapshot), then SQLite's online backup API copies the
pages of that snapshot in steps (`BackupPace`), reporting progress after each, and sleeping
between steps when a read rate is set. Holding the read
transaction across the steps is what keeps the copy consistent under load: without it, every
commit of the server would restart the backup from the first page. The copy is then switched to
a rollback journal (one self-contained file) and fsync'd. While it runs, checkpoints cannot
pass the snapshot, so the WAL grows by what the server writes meanwhile; it is truncated after.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perdure.server.storage.interface import BackupPace

Progress = Callable[[int, int], None]  # bytes copied, bytes in the snapshot


class BackupAborted(Exception):
    """The copy was stopped (the server is shutting down)."""


@dataclass(frozen=True, slots=True)
class Copied:
    page_size: int
    page_count: int
    schema_version: int


def copy_database(
    source: Path, dest: Path, progress: Progress, abort: threading.Event, pace: BackupPace
) -> Copied:
    """Copy the database at `source` into the new file `dest` (removed if the copy fails)."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True, isolation_level=None, check_same_thread=False)
    try:
        src.execute("PRAGMA busy_timeout=10000")
        src.execute("BEGIN")  # the snapshot: everything committed before this point, nothing after
        version_row = src.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        page_size = int(src.execute("PRAGMA page_size").fetchone()[0])
        dst = sqlite3.connect(dest, isolation_level=None)
        try:
            started = time.monotonic()

            def step(_status: int, remaining: int, total: int) -> None:
                if abort.is_set():
                    raise BackupAborted("the backup was stopped")
                done = (total - remaining) * page_size
                progress(done, total * page_size)
                if pace.bytes_per_s_max is not None and remaining > 0:
                    ahead_s = done / pace.bytes_per_s_max - (time.monotonic() - started)
                    if ahead_s > 0:
                        abort.wait(ahead_s)

            src.backup(dst, pages=pace.step_pages, progress=step)
            page_count = int(dst.execute("PRAGMA page_count").fetchone()[0])
            dst.execute("PRAGMA journal_mode=DELETE")  # one file, no -wal beside it
        finally:
            dst.close()
        src.execute("COMMIT")
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    finally:
        src.close()
    fd = os.open(dest, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    schema_version = int(bytes(version_row[0]).decode()) if version_row else 0
    return Copied(page_size=page_size, page_count=page_count, schema_version=schema_version)
