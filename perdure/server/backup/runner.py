"""Takes backups one at a time: those asked for through the admin API (`POST /backups`) and
the periodic snapshots of `[worker.snapshots]`, keeping the newest `num-retained`.

One long-lived task of the server's TaskGroup (`run`) owns every backup; the copy itself runs
on a thread and connection of its own (`Backupable.backup`), so commits go on. A job's files are
written first and its manifest last (`manifest`, `location`): a backup interrupted at any point,
the server killed included, leaves a location without a manifest, which restore refuses."""

from __future__ import annotations

import asyncio
import logging
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perdure.server.backup.location import Location, S3Options, parse_location
from perdure.server.backup.manifest import BackupError, BackupFile, Manifest, fsync_dir, sha256_file
from perdure.server.config import PERDURE_VERSION, VERSION, Settings
from perdure.server.storage.interface import Backupable, BackupPace

log = logging.getLogger("perdure.backup")

DB_NAME = "perdure.sqlite3"
PARTIAL_SUFFIX = ".partial"
SNAPSHOT_PREFIX = "snap-"
STAGING_DIR = ".backup-staging"  # in the data directory: copies bound for S3 before upload
JOBS_KEPT = 20  # finished jobs still answered by GET /backups


class BackupBusy(Exception):
    """A backup is already running or waiting."""


class BackupUnsupported(Exception):
    """This store is not backed up by Perdure (PostgreSQL: pg_dump, base backups)."""


PG_ADVICE = (
    "this server keeps its state in PostgreSQL, which Perdure does not copy: back it up with "
    "PostgreSQL's tools (pg_dump for a logical copy, pg_basebackup with WAL archiving for "
    "point-in-time recovery); see docs/backup.md"
)


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    destination: str
    interval_s: float | None
    num_retained: int | None


def snapshot_policy(settings: Settings) -> SnapshotPolicy | None:
    if settings.snapshot_destination is None:
        return None
    interval = settings.snapshot_interval_ms
    return SnapshotPolicy(
        settings.snapshot_destination,
        None if interval is None else interval / 1000,
        settings.snapshot_num_retained,
    )


def backup_pace(settings: Settings) -> BackupPace:
    return BackupPace(step_pages=settings.backup_step_pages, bytes_per_s_max=settings.backup_rate_max_bytes)


def s3_options(settings: Settings) -> S3Options:
    return S3Options(
        region=settings.snapshot_aws_region,
        access_key_id=settings.snapshot_aws_access_key_id,
        secret_access_key=settings.snapshot_aws_secret_access_key,
        session_token=settings.snapshot_aws_session_token,
        endpoint_url=settings.snapshot_aws_endpoint_url,
        allow_http=settings.snapshot_aws_allow_http,
        profile=settings.snapshot_aws_profile,
    )


@dataclass(slots=True)
class Job:
    id: str
    kind: str  # backup | snapshot
    destination: str
    status: str = "queued"  # queued | running | completed | failed
    phase: str = ""  # copying | checksumming | uploading
    done_bytes: int = 0
    total_bytes: int = 0
    requested_at_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    finished_at_ms: int | None = None
    error: str | None = None
    manifest: Manifest | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "destination": self.destination,
            "status": self.status,
            "phase": self.phase,
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "requested_at_ms": self.requested_at_ms,
            "finished_at_ms": self.finished_at_ms,
            "error": self.error,
        }
        if self.manifest is not None:
            m = self.manifest
            out["manifest"] = {
                "created_at_ms": m.created_at_ms,
                "perdure_version": m.perdure_version,
                "size_bytes": m.size_bytes,
                "files": [{"name": f.name, "size_bytes": f.size_bytes, "sha256": f.sha256} for f in m.files],
                "elapsed_ms": m.elapsed_ms,
            }
        return out


def snapshot_id(now_s: float) -> str:
    """Sortable by time: snap-20261202T170102.123Z."""
    ms = int(now_s * 1000) % 1000
    return SNAPSHOT_PREFIX + time.strftime("%Y%m%dT%H%M%S", time.gmtime(now_s)) + f".{ms:03d}Z"


class BackupRunner:
    def __init__(
        self,
        storage: object,
        data_dir: Path,
        policy: SnapshotPolicy | None = None,
        s3: S3Options | None = None,
        pace: BackupPace | None = None,
    ) -> None:
        self._storage = storage if isinstance(storage, Backupable) else None
        self._data_dir = data_dir
        self._policy = policy
        self._s3 = s3 or S3Options()
        self._pace = pace or BackupPace()
        self._pending: asyncio.Queue[tuple[Job, Location]] = asyncio.Queue(maxsize=1)
        self._jobs: dict[str, Job] = {}
        self._current: Job | None = None
        self._abort = threading.Event()

    @property
    def policy(self) -> SnapshotPolicy | None:
        return self._policy

    # ------------------------------------------------------------ requests (admin API)

    async def request(self, destination: str) -> Job:
        """Queue a backup to `destination` (a new or empty location); raises BackupUnsupported,
        BackupBusy or BackupError (a bad or non-empty destination)."""
        if self._storage is None:
            raise BackupUnsupported(PG_ADVICE)
        self._check_idle()
        location = await asyncio.to_thread(self._empty_location, destination)
        self._check_idle()
        job = Job(id=f"bk_{uuid.uuid4().hex[:16]}", kind="backup", destination=location.url)
        self._remember(job)
        self._pending.put_nowait((job, location))
        return job

    def _check_idle(self) -> None:
        if self._current is not None or self._pending.full():
            raise BackupBusy(f"a backup is already running ({(self._current or self._queued_job()).id})")

    def _empty_location(self, destination: str) -> Location:
        location = parse_location(destination, self._s3)
        if not location.is_empty():
            raise BackupError(f"{location.url} is not empty: a backup goes to a new or empty location")
        return location

    def _queued_job(self) -> Job:
        return next(j for j in self._jobs.values() if j.status == "queued")

    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def jobs(self) -> list[Job]:
        return sorted(self._jobs.values(), key=lambda j: j.requested_at_ms, reverse=True)

    def _remember(self, job: Job) -> None:
        self._jobs[job.id] = job
        finished = [j for j in self._jobs.values() if j.finished_at_ms is not None]
        for old in sorted(finished, key=lambda j: j.requested_at_ms)[: max(0, len(finished) - JOBS_KEPT)]:
            del self._jobs[old.id]

    # ------------------------------------------------------------ the owner task

    async def run(self) -> None:
        """Until cancelled: take requested backups as they come and snapshots when they are due."""
        interval = self._policy.interval_s if self._policy is not None and self._storage is not None else None
        next_snapshot = None if interval is None else time.monotonic() + interval
        while True:
            timeout = None if next_snapshot is None else max(0.0, next_snapshot - time.monotonic())
            try:
                async with asyncio.timeout(timeout):
                    job, location = await self._pending.get()
            except TimeoutError:
                assert interval is not None
                next_snapshot = time.monotonic() + interval
                await self.snapshot()
                continue
            await self._take(job, location)

    async def snapshot(self) -> Job:
        """Take one snapshot into the policy's destination now, then apply num-retained."""
        assert self._policy is not None
        root = parse_location(self._policy.destination, self._s3)
        name = snapshot_id(time.time())
        job = Job(id=name, kind="snapshot", destination=root.child(name).url)
        self._remember(job)
        await asyncio.to_thread(self._drop_interrupted, root)
        await self._take(job, root.child(name))
        if job.status == "completed" and self._policy.num_retained is not None:
            await asyncio.to_thread(self._retain, root, self._policy.num_retained)
        return job

    # ------------------------------------------------------------ one backup

    async def _take(self, job: Job, location: Location) -> None:
        self._current = job
        job.status = "running"
        try:
            job.manifest = await self._copy(job, location)
            job.status = "completed"
            log.info("backup %s completed: %s (%d bytes)", job.id, job.destination, job.manifest.size_bytes)
        except asyncio.CancelledError:
            job.status, job.error = "failed", "the server stopped during the backup"
            raise
        except Exception as exc:
            job.status, job.error = "failed", str(exc)
            log.warning("backup %s to %s failed: %s", job.id, job.destination, exc)
        finally:
            job.finished_at_ms = int(time.time() * 1000)
            self._current = None

    async def _copy(self, job: Job, location: Location) -> Manifest:
        assert self._storage is not None
        started = time.monotonic()
        local = location.local_path()
        work = local if local is not None else self._data_dir / STAGING_DIR / job.id
        await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
        partial = work / (DB_NAME + PARTIAL_SUFFIX)
        try:
            job.phase = "copying"

            def copied(done: int, total: int) -> None:
                job.done_bytes, job.total_bytes = done, total

            page_size, page_count, schema_version = await self._storage.backup(
                partial, copied, self._abort, self._pace
            )
            size = page_size * page_count
            job.phase, job.done_bytes, job.total_bytes = "checksumming", 0, size

            def hashed(n: int) -> None:
                job.done_bytes = n

            digest = await asyncio.to_thread(sha256_file, partial, hashed)
            await asyncio.to_thread(_publish_file, partial, work / DB_NAME)
            manifest = Manifest(
                created_at_ms=job.requested_at_ms,
                perdure_version=PERDURE_VERSION,
                restate_version=VERSION,
                store="sqlite",
                files=(BackupFile(DB_NAME, size, digest),),
                schema_version=schema_version,
                page_size=page_size,
                page_count=page_count,
                elapsed_ms=int((time.monotonic() - started) * 1000),
                kind=job.kind,
            )
            job.phase, job.done_bytes = "uploading", 0
            await asyncio.to_thread(location.upload, work, manifest, hashed)
            return manifest
        finally:
            if local is None:
                await asyncio.to_thread(shutil.rmtree, work, True)

    # ------------------------------------------------------------ snapshot housekeeping

    @staticmethod
    def _snapshots(root: Location) -> list[tuple[str, bool]]:
        """(name, complete) of the snapshots under `root`, oldest first."""
        names = [n for n in root.children() if n.startswith(SNAPSHOT_PREFIX)]
        out = []
        for name in names:
            try:
                complete = root.child(name).manifest() is not None
            except BackupError:
                complete = False
            out.append((name, complete))
        return out

    def _drop_interrupted(self, root: Location) -> None:
        for name, complete in self._snapshots(root):
            if not complete:  # left by a server killed during a snapshot: never restorable
                log.info("deleting the interrupted snapshot %s", root.child(name).url)
                root.child(name).delete()

    def _retain(self, root: Location, keep: int) -> None:
        complete = [name for name, ok in self._snapshots(root) if ok]
        for name in complete[: max(0, len(complete) - keep)]:
            log.info("deleting the snapshot %s (num-retained = %d)", root.child(name).url, keep)
            root.child(name).delete()

    def abort(self) -> None:
        """Stop a running copy at its next step (server shutdown)."""
        self._abort.set()


def _publish_file(partial: Path, final: Path) -> None:
    partial.replace(final)
    fsync_dir(final.parent)
