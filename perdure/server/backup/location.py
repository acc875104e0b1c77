"""Where backups go: a local directory (`/path` or `file:///path`) or S3-compatible storage
(`s3://bucket/prefix`, through boto3, an optional dependency: `pip install 'perdure[s3]'`).

A location holds one backup (its files and `manifest.json`) or, as a snapshot destination,
one backup per child (`<destination>/<snapshot-id>/`). Files go first and the manifest last, so
a location whose manifest is missing holds an interrupted backup."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

from perdure.server.backup.manifest import MANIFEST, BackupError, Manifest, read_manifest, write_atomically

Progress = Callable[[int], None]  # bytes moved so far (of the file being moved)


@dataclass(frozen=True, slots=True)
class S3Options:
    """Restate's object-store keys (`[worker.snapshots] aws-*`); unset ones fall back to boto3's
    own chain (AWS_* variables, ~/.aws, instance roles)."""

    region: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    endpoint_url: str | None = None
    allow_http: bool = False
    profile: str | None = None


class Location(Protocol):
    @property
    def url(self) -> str: ...
    def local_path(self) -> Path | None: ...  # write in place when local
    def is_empty(self) -> bool: ...
    def manifest(self) -> Manifest | None: ...  # None: no manifest (interrupted, or not a backup)
    def children(self) -> list[str]: ...
    def child(self, name: str) -> Location: ...
    def upload(self, staged: Path, manifest: Manifest, progress: Progress) -> None: ...
    def download(self, manifest: Manifest, into: Path, progress: Progress) -> None: ...
    def delete(self) -> None: ...


class LocalLocation:
    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def local_path(self) -> Path | None:
        return self.path

    def is_empty(self) -> bool:
        return not self.path.exists() or (self.path.is_dir() and not any(self.path.iterdir()))

    def manifest(self) -> Manifest | None:
        if not (self.path / MANIFEST).is_file():
            return None
        return read_manifest(self.path)

    def children(self) -> list[str]:
        if not self.path.is_dir():
            return []
        return sorted(p.name for p in self.path.iterdir() if p.is_dir())

    def child(self, name: str) -> LocalLocation:
        return LocalLocation(self.path / name)

    def upload(self, staged: Path, manifest: Manifest, progress: Progress) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        for f in manifest.files:
            if staged.resolve() != self.path.resolve():
                shutil.copyfile(staged / f.name, self.path / f.name)
        write_atomically(self.path / MANIFEST, manifest.to_json())

    def download(self, manifest: Manifest, into: Path, progress: Progress) -> None:
        for f in manifest.files:
            shutil.copyfile(self.path / f.name, into / f.name)

    def delete(self) -> None:
        # The manifest first: a half-deleted backup then reads as incomplete, never as intact.
        (self.path / MANIFEST).unlink(missing_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)


class S3Location:
    def __init__(self, bucket: str, prefix: str, client: Any) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._client = client

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def local_path(self) -> Path | None:
        return None

    def _keys(self) -> list[str]:
        keys: list[str] = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key("")
        )
        for page in pages:
            keys.extend(obj["Key"] for obj in page.get("Contents", []))
        return keys

    def is_empty(self) -> bool:
        resp = self._client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(""), MaxKeys=1)
        return not resp.get("Contents")

    def manifest(self) -> Manifest | None:
        try:
            obj = self._client.get_object(Bucket=self.bucket, Key=self._key(MANIFEST))
        except self._client.exceptions.NoSuchKey:
            return None
        return Manifest.from_json(obj["Body"].read())

    def children(self) -> list[str]:
        names: list[str] = []
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(""), Delimiter="/"
        )
        for page in pages:
            names.extend(p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", []))
        return sorted(names)

    def child(self, name: str) -> S3Location:
        return S3Location(self.bucket, self._key(name), self._client)

    def upload(self, staged: Path, manifest: Manifest, progress: Progress) -> None:
        for f in manifest.files:
            moved = _Tally(progress)
            self._client.upload_file(str(staged / f.name), self.bucket, self._key(f.name), Callback=moved)
        self._client.put_object(Bucket=self.bucket, Key=self._key(MANIFEST), Body=manifest.to_json())

    def download(self, manifest: Manifest, into: Path, progress: Progress) -> None:
        for f in manifest.files:
            moved = _Tally(progress)
            self._client.download_file(self.bucket, self._key(f.name), str(into / f.name), Callback=moved)

    def delete(self) -> None:
        keys = self._keys()
        manifest = self._key(MANIFEST)
        if manifest in keys:  # the manifest first, as for a local directory
            self._client.delete_object(Bucket=self.bucket, Key=manifest)
        rest = [k for k in keys if k != manifest]
        for start in range(0, len(rest), 1000):  # S3's limit per DeleteObjects
            chunk = [{"Key": k} for k in rest[start : start + 1000]]
            self._client.delete_objects(Bucket=self.bucket, Delete={"Objects": chunk, "Quiet": True})


class _Tally:
    """boto3 reports bytes moved since its last call; progress wants the running total."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._done = 0

    def __call__(self, n: int) -> None:
        self._done += n
        self._progress(self._done)


def s3_client(options: S3Options) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise BackupError("s3:// locations need boto3: pip install 'perdure[s3]'") from None
    if options.endpoint_url and options.endpoint_url.startswith("http://") and not options.allow_http:
        raise BackupError(f"{options.endpoint_url} is plain HTTP: set aws-allow-http = true to use it")
    session = (
        boto3.session.Session(profile_name=options.profile) if options.profile else boto3.session.Session()
    )
    return session.client(
        "s3",
        region_name=options.region,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        endpoint_url=options.endpoint_url,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
    )


def parse_location(text: str, s3: S3Options | None = None) -> Location:
    """`/dir`, `file:///dir` or `s3://bucket/prefix`."""
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise BackupError(f"{text}: an s3:// location needs a bucket (s3://bucket/prefix)")
        return S3Location(parsed.netloc, unquote(parsed.path), s3_client(s3 or S3Options()))
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise BackupError(f"{text}: a file:// URL names a local path (file:///dir)")
        return LocalLocation(Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise BackupError(f"{text}: a location is a directory, file:///dir or s3://bucket/prefix")
    path = Path(text)
    if not path.is_absolute():
        raise BackupError(f"{text}: the server needs an absolute path")
    return LocalLocation(path)
