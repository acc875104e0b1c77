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
        deadline = time.monotonic() + 30
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
