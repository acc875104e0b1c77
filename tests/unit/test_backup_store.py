"""Backups of a real SQLite store without a server: the copy is consistent while commits go on,
restore verifies the manifest (a missing manifest, a truncated or altered file are refused),
refuses a non-empty data directory unless forced, snapshots keep the newest `num-retained`,
and the `[worker.snapshots]` keys configure them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from perdure.server.backup.location import LocalLocation, parse_location
from perdure.server.backup.manifest import BackupError
from perdure.server.backup.restore import restore
from perdure.server.backup.runner import BackupRunner, BackupUnsupported, SnapshotPolicy, snapshot_policy
from perdure.server.config_sources import ConfigError, load_settings
from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.storage.interface import BackupPace
from perdure.server.storage.sqlite import DB_FILE, SqliteStorage

ROWS = 2_000


def _batch(start: int, n: int) -> WriteBatch:
    batch = WriteBatch()
    for i in range(start, start + n):
        batch.ops.append((Op.STATE_SET, ("Svc", f"k{i}", b"v", b"x" * 500)))
    return batch


def _state_rows(db: Path) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return int(conn.execute("SELECT count(*) FROM state").fetchone()[0])
    finally:
        conn.close()


async def _backup(storage: SqliteStorage, data: Path, dest: Path, *, commits_during: int) -> int:
    """Back up while `commits_during` more batches commit; returns the rows the store had at the
    moment the backup was requested."""
    runner = BackupRunner(storage, data, pace=BackupPace(step_pages=4))
    await storage.commit_batch(_batch(0, ROWS))
    async with asyncio.TaskGroup() as tg:
        owner = tg.create_task(runner.run())
        job = await runner.request(str(dest))
        for c in range(commits_during):
            await storage.commit_batch(_batch(ROWS + c * 10, 10))
        while job.status in ("queued", "running"):
            await asyncio.sleep(0.01)
        owner.cancel()
    assert job.status == "completed", job.error
    return ROWS


def _backed_up(tmp_path: Path, commits_during: int = 0) -> tuple[Path, int]:
    data, dest = tmp_path / "data", tmp_path / "backup"

    async def go() -> int:
        storage = SqliteStorage(data)
        await storage.open()
        try:
            return await _backup(storage, data, dest, commits_during=commits_during)
        finally:
            await storage.close()

    return dest, asyncio.run(go())


def _restore(src: Path, into: Path, force: bool = False) -> None:
    restore(LocalLocation(src), into, force=force, progress=lambda _done, _total: None)


def test_a_backup_taken_while_commits_go_on_is_a_consistent_snapshot(tmp_path: Path) -> None:
    dest, rows_before = _backed_up(tmp_path, commits_during=50)
    _restore(dest, tmp_path / "restored")
    restored = _state_rows(tmp_path / "restored" / DB_FILE)
    # Everything committed before the request is in it; what came later is either wholly in or not.
    assert restored >= rows_before and (restored - rows_before) % 10 == 0
    assert not (tmp_path / "restored" / f"{DB_FILE}-wal").exists()


def test_restore_refuses_a_backup_without_manifest(tmp_path: Path) -> None:
    dest, _ = _backed_up(tmp_path)
    (dest / "manifest.json").unlink()
    with pytest.raises(BackupError, match=r"no manifest\.json"):
        _restore(dest, tmp_path / "r")
    assert not (tmp_path / "r" / DB_FILE).exists()


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_restore_refuses_a_damaged_backup(tmp_path: Path, damage: str) -> None:
    dest, _ = _backed_up(tmp_path)
    db = dest / DB_FILE
    data = bytearray(db.read_bytes())
    if damage == "truncate":
        del data[len(data) // 2 :]
    else:
        data[len(data) // 2] ^= 0xFF
    db.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="damaged"):
        _restore(dest, tmp_path / "r")
    assert not (tmp_path / "r" / DB_FILE).exists()


def test_restore_refuses_a_non_empty_data_dir_unless_forced(tmp_path: Path) -> None:
    dest, rows = _backed_up(tmp_path)
    target = tmp_path / "r"
    target.mkdir()
    (target / DB_FILE).write_bytes(b"an old store")
    (target / f"{DB_FILE}-wal").write_bytes(b"its WAL")
    with pytest.raises(BackupError, match="not empty"):
        _restore(dest, target)
    assert (target / DB_FILE).read_bytes() == b"an old store"
    _restore(dest, target, force=True)
    assert _state_rows(target / DB_FILE) == rows
    assert not (target / f"{DB_FILE}-wal").exists()


def test_a_backup_goes_only_to_an_empty_location(tmp_path: Path) -> None:
    async def go() -> None:
        storage = SqliteStorage(tmp_path / "data")
        await storage.open()
        try:
            (tmp_path / "full").mkdir()
            (tmp_path / "full" / "something").write_text("x")
            with pytest.raises(BackupError, match="not empty"):
                await BackupRunner(storage, tmp_path / "data").request(str(tmp_path / "full"))
            with pytest.raises(BackupError, match="absolute path"):
                await BackupRunner(storage, tmp_path / "data").request("relative/dir")
        finally:
            await storage.close()

    asyncio.run(go())


def test_a_store_that_cannot_copy_itself_is_refused_with_advice(tmp_path: Path) -> None:
    runner = BackupRunner(object(), tmp_path)
    with pytest.raises(BackupUnsupported, match="pg_dump"):
        asyncio.run(runner.request(str(tmp_path / "b")))


def test_snapshots_keep_the_newest_num_retained_and_restore_picks_the_newest(tmp_path: Path) -> None:
    snaps = tmp_path / "snaps"

    async def go() -> list[str]:
        storage = SqliteStorage(tmp_path / "data")
        await storage.open()
        try:
            runner = BackupRunner(storage, tmp_path / "data", SnapshotPolicy(f"file://{snaps}", None, 2))
            names = []
            for i in range(4):
                await storage.commit_batch(_batch(i * 10, 10))
                job = await runner.snapshot()
                assert job.status == "completed", job.error
                names.append(job.id)
                await asyncio.sleep(0.002)  # ids are by the millisecond
            return names
        finally:
            await storage.close()

    names = asyncio.run(go())
    assert sorted(p.name for p in snaps.iterdir()) == names[-2:]
    _restore(snaps, tmp_path / "r")
    assert _state_rows(tmp_path / "r" / DB_FILE) == 40  # the newest: all four batches


def test_worker_snapshots_keys_configure_snapshots(tmp_path: Path) -> None:
    toml = tmp_path / "restate.toml"
    toml.write_text(
        '[worker.snapshots]\ndestination = "s3://bucket/prefix"\nsnapshot-interval = "1h"\nnum-retained = 3\n'
        'aws-endpoint-url = "http://127.0.0.1:9000"\naws-allow-http = true\naws-secret-access-key = "s"\n'
    )
    settings = load_settings(toml, {"RESTATE_WORKER__SNAPSHOTS__NUM_RETAINED": "5"}, {}).settings
    policy = snapshot_policy(settings)
    assert policy == SnapshotPolicy("s3://bucket/prefix", 3600.0, 5)
    assert settings.snapshot_aws_allow_http and settings.snapshot_aws_endpoint_url == "http://127.0.0.1:9000"
    with pytest.raises(ConfigError, match="pg_dump"):
        load_settings(toml, {"PERDURE_STORE": "postgresql://u@localhost/db"}, {})


def test_locations_parse_paths_file_urls_and_refuse_other_schemes() -> None:
    assert parse_location("/srv/backups").url == "file:///srv/backups"
    assert parse_location("file:///srv/backups").url == "file:///srv/backups"
    with pytest.raises(BackupError):
        parse_location("ftp://host/dir")
    with pytest.raises(BackupError, match="bucket"):
        parse_location("s3:///nobucket")
