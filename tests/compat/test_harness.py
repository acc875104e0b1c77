"""The harness itself: group kill, start failures, restarts that keep data, h2c to SDK endpoints."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from tests.support import ManagedProcess, PythonService, Server, query, register
from tests.support.process import ProcessFailedToStart


def test_kill_takes_down_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "started"
    script = f"sleep 60 & sleep 60 & touch {marker}; wait"
    proc = ManagedProcess("sleepers", ["sh", "-c", script], tmp_path / "log", ready=marker.exists)
    proc.start()
    children = psutil.Process(proc.pid).children(recursive=True)
    assert len(children) == 2
    proc.kill()
    _, alive = psutil.wait_procs(children, timeout=5)
    assert alive == []
    assert not proc.running


def test_process_exiting_before_ready_fails_with_its_log_tail(tmp_path: Path) -> None:
    proc = ManagedProcess("boom", ["sh", "-c", "echo kaboom; exit 3"], tmp_path / "log", ready=lambda: False)
    with pytest.raises(ProcessFailedToStart, match="kaboom"):
        proc.start()
    assert not proc.running


def test_python_service_speaks_h2c_with_default_hypercorn_config(tmp_path: Path) -> None:
    with (
        PythonService("tests.compat.services.versioned", "app", log_dir=tmp_path) as svc,
        httpx.Client(http1=False, http2=True) as client,
    ):
        resp = client.get(
            f"{svc.url}/discover", headers={"accept": "application/vnd.restate.endpointmanifest.v3+json"}
        )
    assert resp.http_version == "HTTP/2"
    assert resp.status_code == 200, resp.text
    assert [s["name"] for s in resp.json()["services"]] == ["Versioned"]


def test_server_restart_keeps_registered_deployments(server: Server, tmp_path: Path) -> None:
    with PythonService("tests.compat.services.versioned", "app", log_dir=tmp_path) as svc:
        deployment_id = register(server.admin_url, svc.url)
        server.restart()
        listed = httpx.get(f"{server.admin_url}/deployments", timeout=10).json()["deployments"]
        assert deployment_id in [d["id"] for d in listed]
        assert httpx.post(f"{server.ingress_url}/Versioned/which", timeout=30).json() == "unlabelled"


def test_query_lists_registered_services(restate_server: Server, tmp_path: Path) -> None:
    with PythonService("tests.compat.services.versioned", "app", log_dir=tmp_path) as svc:
        register(restate_server.admin_url, svc.url)
        rows = query(restate_server.admin_url, "SELECT name, ty FROM sys_service")
    assert {"name": "Versioned", "ty": "service"} in rows
