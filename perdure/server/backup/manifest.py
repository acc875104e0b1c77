"""What makes a backup complete: `manifest.json`, written last, names every file of the backup
with its size and SHA-256 and says which server and store wrote it. A directory (or S3 prefix)
without a manifest is an interrupted backup; a file whose size or checksum differs from the
manifest is a damaged one. Either is refused by `perdure restore`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

MANIFEST = "manifest.json"
FORMAT = "perdure-backup"
FORMAT_VERSION = 1
HASH_CHUNK_BYTES = 1 << 20

Progress = Callable[[int], None]  # bytes done so far


class BackupError(Exception):
    """A backup cannot be taken, or a copy is not a complete, intact backup."""


@dataclass(frozen=True, slots=True)
class BackupFile:
    name: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    created_at_ms: int
    perdure_version: str
    restate_version: str
    store: str
    files: tuple[BackupFile, ...]
    schema_version: int
    page_size: int
    page_count: int
    elapsed_ms: int
    kind: str = "backup"  # or "snapshot"
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def size_bytes(self) -> int:
        return sum(f.size_bytes for f in self.files)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @staticmethod
    def from_json(data: bytes) -> Manifest:
        try:
            raw = orjson.loads(data)
            if not isinstance(raw, dict) or raw.get("format") != FORMAT:
                raise BackupError("manifest.json is not a Perdure backup manifest")
            if int(raw["format_version"]) > FORMAT_VERSION:
                raise BackupError(
                    f"backup format {raw['format_version']} is newer than this Perdure reads "
                    f"({FORMAT_VERSION})"
                )
            files = tuple(
                BackupFile(str(f["name"]), int(f["size_bytes"]), str(f["sha256"])) for f in raw["files"]
            )
            if not files:
                raise BackupError("the manifest lists no files")
            return Manifest(
                created_at_ms=int(raw["created_at_ms"]),
                perdure_version=str(raw["perdure_version"]),
                restate_version=str(raw["restate_version"]),
                store=str(raw["store"]),
                files=files,
                schema_version=int(raw["schema_version"]),
                page_size=int(raw["page_size"]),
                page_count=int(raw["page_count"]),
                elapsed_ms=int(raw["elapsed_ms"]),
                kind=str(raw.get("kind", "backup")),
                format_version=int(raw["format_version"]),
                extra=dict(raw.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BackupError(f"manifest.json is malformed: {exc}") from None


def sha256_file(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """`path` holds `data` whole or not at all, durably (temp file, fsync, rename, fsync dir)."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    if not path.is_file():
        raise BackupError(
            f"{directory} is not a complete backup: it has no {MANIFEST} (the backup was interrupted, "
            "or this is not a backup)"
        )
    return Manifest.from_json(path.read_bytes())


def verify_file(path: Path, expected: BackupFile, progress: Progress | None = None) -> None:
    """Raise unless `path` has the manifest's size and checksum."""
    if not path.is_file():
        raise BackupError(f"the backup is missing {expected.name}")
    size = path.stat().st_size
    if size != expected.size_bytes:
        raise BackupError(
            f"{expected.name} is {size:,} bytes, the manifest says {expected.size_bytes:,}: "
            "the backup is damaged"
        )
    if sha256_file(path, progress) != expected.sha256:
        raise BackupError(f"{expected.name} does not match the manifest's SHA-256: the backup is damaged")


def verify_directory(directory: Path, progress: Progress | None = None) -> Manifest:
    """The manifest of a complete, intact backup in `directory`; raises BackupError otherwise."""
    manifest = read_manifest(directory)
    for f in manifest.files:
        verify_file(directory / f.name, f, progress)
    return manifest
