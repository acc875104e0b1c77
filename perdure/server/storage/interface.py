"""The storage interface: the only door to the database.

Writes go through `commit_batch` (one transaction, one fsync). Reads the
processor needs while applying commands are synchronous and come from
committed data; the processor keeps everything it wrote but has not yet seen
committed in memory, so the reads never miss a write."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import Entry, Invocation


class StorageError(Exception):
    """The store failed (disk full, I/O error, corruption)."""


class Reader(Protocol):
    """Synchronous reads of committed data, used by the processor."""

    def get_invocation(self, raw_id: bytes) -> Invocation | None: ...
    def get_journal(self, raw_id: bytes) -> list[Entry]: ...
    def get_state(self, service: str, key: str) -> dict[bytes, bytes]: ...
    def get_promise(self, service: str, key: str, name: str) -> bytes | None: ...
    def expired(self, now_ms: int, limit: int) -> list[bytes]: ...  # completed, retention over
    def get_dedup(self, producer: str) -> int | None: ...  # highest ingested offset (Kafka records)
    # The partition mailbox: up to `limit` rows waiting for `partitions`, (partition, seq, body)
    # in seq order. Only a cluster node's store has rows (a single node owns every partition, so
    # nothing is ever mailed): SQLite answers [] without a query.
    def read_mailbox(self, partitions: list[int], limit: int) -> list[tuple[int, int, bytes]]: ...


@runtime_checkable
class Reclaimable(Protocol):
    """A store that hands freed space back to the file system in bounded steps (SQLite's
    incremental vacuum); stores that do it on their own (PostgreSQL's autovacuum) need not."""

    async def reclaim(self, pages_max: int) -> int: ...  # pages given back (< pages_max: done)


@dataclass(frozen=True, slots=True)
class BackupPace:
    """How a backup copies: pages per step, and an optional ceiling on its read rate so a big
    copy does not take the disk from the commits."""

    step_pages: int = 1_024  # 4 MiB of 4 KiB pages
    bytes_per_s_max: int | None = None


@runtime_checkable
class Backupable(Protocol):
    """A store that can copy itself, consistently, while it serves (SQLite's online backup on a
    reader connection); PostgreSQL's are pg_dump and base backups (docs/backup.md)."""

    async def backup(
        self, dest: Path, progress: Callable[[int, int], None], abort: threading.Event, pace: BackupPace
    ) -> tuple[int, int, int]: ...  # page size, page count, schema version


class Recovery(Protocol):
    """What a processor loads when it (re)starts."""

    def load_running(self) -> list[Invocation]: ...  # status invoked/paused, journals included
    def load_locks(self) -> dict[tuple[str, str], bytes]: ...
    def load_inbox(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]: ...  # key -> [(seq, id)]
    def load_timers(self, limit: int) -> list[Timer]: ...
    # Concurrency/rate rules: (pattern, record, bucket tat_us) and the entries they hold:
    # (invocation id, seq, running 0/1, service, handler, key).
    def load_limits(
        self,
    ) -> tuple[list[tuple[str, bytes, int]], list[tuple[bytes, int, int, str, str, str | None]]]: ...
    def load_schedules(self) -> list[bytes]: ...  # schedule records


@runtime_checkable
class MailboxStore(Protocol):
    """A store several nodes share (PostgreSQL; the memory store for the simulation): a node
    whose ingress finds no live owner for a partition posts the request into that partition's
    mailbox, committed before it is acknowledged, and waits for the row to be applied."""

    async def post_mail(self, partition: int, body: bytes) -> int: ...  # committed; its seq
    async def mail_pending(self, partition: int, seq: int) -> bool: ...  # not applied yet


class Storage(Reader, Recovery, Protocol):
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def commit_batch(self, batch: WriteBatch) -> None: ...
    async def get_meta(self, key: str) -> bytes | None: ...
    async def put_meta(self, key: str, value: bytes) -> None: ...
