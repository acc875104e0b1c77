"""`perdure restore`: a data directory prepared from a backup, or from the newest complete
snapshot of a snapshot destination. Nothing is written to the data directory's store until the
copy matches the manifest's size and SHA-256; the store then appears by one rename, so an
interrupted restore leaves no store (only a `.partial` file) and the server cannot start on half
of one."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from perdure.server.backup.location import Location
from perdure.server.backup.manifest import (
    HASH_CHUNK_BYTES,
    BackupError,
    BackupFile,
    Manifest,
    fsync_dir,
    verify_file,
)
from perdure.server.backup.runner import DB_NAME, PARTIAL_SUFFIX, SNAPSHOT_PREFIX

Progress = Callable[[int, int], None]  # bytes done, bytes in all
STORE_FILES = (DB_NAME, f"{DB_NAME}-wal", f"{DB_NAME}-shm", DB_NAME + PARTIAL_SUFFIX)


@dataclass(frozen=True, slots=True)
class Restored:
    source: str
    manifest: Manifest
    data_dir: Path


def pick_backup(source: Location) -> tuple[Location, Manifest]:
    """`source` itself when it holds a complete backup, else its newest complete snapshot."""
    manifest = source.manifest()
    if manifest is not None:
        return source, manifest
    snapshots = [n for n in source.children() if n.startswith(SNAPSHOT_PREFIX)]
    for name in reversed(snapshots):  # newest first: ids sort by time
        child = source.child(name)
        try:
            found = child.manifest()
        except BackupError:
            continue
        if found is not None:
            return child, found
    raise BackupError(
        f"{source.url} holds no complete backup: no manifest.json there"
        + (" nor in any of its snapshots" if snapshots else "")
        + " (an interrupted backup has none)"
    )


def _check_target(data_dir: Path, force: bool) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise BackupError(f"{data_dir} is not a directory")
    if data_dir.is_dir() and any(data_dir.iterdir()) and not force:
        raise BackupError(f"{data_dir} is not empty: pass --force to replace the store in it")


def _copy_verified(src: Path, dest: Path, expected: BackupFile, progress: Progress) -> None:
    digest = hashlib.sha256()
    done = 0
    with src.open("rb") as fin, dest.open("wb") as fout:
        while chunk := fin.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            fout.write(chunk)
            done += len(chunk)
            progress(done, expected.size_bytes)
        fout.flush()
        os.fsync(fout.fileno())
    if done != expected.size_bytes or digest.hexdigest() != expected.sha256:
        dest.unlink(missing_ok=True)
        raise BackupError(
            f"{expected.name} does not match the manifest (size or SHA-256): the backup is damaged"
        )


def restore(source: Location, data_dir: Path, *, force: bool, progress: Progress) -> Restored:
    """Prepare `data_dir` from the backup at `source` (see the module docstring)."""
    _check_target(data_dir, force)
    backup, manifest = pick_backup(source)
    if manifest.store != "sqlite":
        raise BackupError(f"the backup is of a {manifest.store} store; this restores SQLite stores")
    db = next((f for f in manifest.files if f.name == DB_NAME), None)
    if db is None:
        raise BackupError(f"the manifest lists no {DB_NAME}")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in STORE_FILES:  # --force: the old store goes, whole
        (data_dir / name).unlink(missing_ok=True)
    partial = data_dir / (DB_NAME + PARTIAL_SUFFIX)
    local = backup.local_path()
    if local is not None:
        _copy_verified(local / DB_NAME, partial, db, progress)
    else:
        with tempfile.TemporaryDirectory(dir=data_dir, prefix=".restore-") as tmp:
            backup.download(manifest, Path(tmp), lambda n: progress(n, db.size_bytes))
            downloaded = Path(tmp) / DB_NAME
            verify_file(downloaded, db)
            shutil.move(downloaded, partial)
            fd = os.open(partial, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    partial.replace(data_dir / DB_NAME)
    fsync_dir(data_dir)
    return Restored(source=backup.url, manifest=manifest, data_dir=data_dir)
