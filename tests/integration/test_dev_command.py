"""`perdure dev MODULE:APP` starts the server and the service, registers it, serves calls,
and stops both on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.paths import REPO_ROOT, perdure_executable
from tests.support.ports import free_port


def test_dev_runs_server_and_service_together(tmp_path: Path) -> None:
    ingress, admin, service = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(perdure_executable()), "dev", "examples.greeter:app",
            "--service-port", str(service), "--data-dir", str(tmp_path / "data"),
            "--ingress-address", f"127.0.0.1:{ingress}", "--admin-address", f"127.0.0.1:{admin}",
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90  # a hang guard: server and app start on a loaded machine
        answer = None
        while time.monotonic() < deadline and answer is None:
            try:
                resp = httpx.post(f"http://127.0.0.1:{ingress}/Greeter/greet", json="Dev", timeout=5)
                if resp.status_code == 200:
                    answer = resp.json()
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert answer is not None and "Dev" in answer, answer
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "registered" in out, out


DEV_APP = """
from datetime import timedelta

import perdure

VERSION = "{version}"
svc = perdure.Service("DevReload")


@svc.handler()
async def which(ctx: perdure.Context) -> str:
    return VERSION


@svc.handler()
async def nap(ctx: perdure.Context, ms: int) -> str:
    await ctx.sleep(timedelta(milliseconds=ms))
    return VERSION


app = perdure.app(services=[svc])
"""
NAP_MS = 4000
RELOAD_BOUND_S = 10.0  # generous: the reload itself takes about a second


def _which(ingress: int) -> str | None:
    try:
        resp = httpx.post(f"http://127.0.0.1:{ingress}/DevReload/which", timeout=5)
    except httpx.HTTPError:
        return None
    return str(resp.json()) if resp.status_code == 200 else None


def test_dev_reloads_a_changed_app_as_a_new_deployment_while_old_invocations_finish(tmp_path: Path) -> None:
    """Editing the served module gives a new deployment; an invocation sleeping across the edit
    finishes on the old one (its process is kept)."""
    module = tmp_path / "devapp.py"
    module.write_text(DEV_APP.format(version="v1"))
    ingress, admin, service = free_port(), free_port(), free_port()
    proc = subprocess.Popen(
        [
            str(perdure_executable()), "dev", "devapp:app", "--watch", str(tmp_path),
            "--service-port", str(service), "--data-dir", str(tmp_path / "data"),
            "--ingress-address", f"127.0.0.1:{ingress}", "--admin-address", f"127.0.0.1:{admin}",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _which(ingress) != "v1":
            time.sleep(0.1)
        assert _which(ingress) == "v1"
        sent = httpx.post(f"http://127.0.0.1:{ingress}/DevReload/nap/send", json=NAP_MS, timeout=5).json()
        module.write_text(DEV_APP.format(version="v2"))
        edited = time.monotonic()
        while time.monotonic() < edited + 30 and _which(ingress) != "v2":
            time.sleep(0.05)
        reload_s = time.monotonic() - edited
        assert _which(ingress) == "v2"
        assert reload_s < RELOAD_BOUND_S, reload_s
        attached = httpx.get(
            f"http://127.0.0.1:{ingress}/restate/invocation/{sent['invocationId']}/attach", timeout=30
        )
        assert attached.json() == "v1", "the sleeping invocation finished on the old deployment"
        deployments = httpx.get(f"http://127.0.0.1:{admin}/deployments", timeout=5).json()["deployments"]
        assert len(deployments) == 2
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "reloaded" in out and "/ui/" in out, out
    print(f"reload took {reload_s:.2f}s")
