"""`perdure server` starts fast, logs where it listens, and stops gracefully on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.paths import perdure_executable
from tests.support.ports import free_port

# A liveness bound, not a speed claim (bench/ measures start-up): generous for a loaded machine.
HEALTHY_BOUND_S = 20.0


def test_server_is_healthy_fast_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    ingress, admin = free_port(), free_port()
    started = time.monotonic()
    proc = subprocess.Popen(
        [
            str(perdure_executable()),
            "server",
            "--data-dir",
            str(tmp_path / "data"),
            "--ingress-address",
            f"127.0.0.1:{ingress}",
            "--admin-address",
            f"127.0.0.1:{admin}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        healthy_after = None
        while time.monotonic() - started < HEALTHY_BOUND_S:
            try:
                if httpx.get(f"http://127.0.0.1:{admin}/health", timeout=0.5).status_code == 200:
                    healthy_after = time.monotonic() - started
                    break
            except httpx.HTTPError:
                time.sleep(0.02)
        assert healthy_after is not None, "never healthy"
        assert httpx.get(f"http://127.0.0.1:{ingress}/restate/health", timeout=2).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert f"ingress http://127.0.0.1:{ingress}" in out and f"admin http://127.0.0.1:{admin}" in out, out
    assert "perdure stopped" in out, out
    # Process start (interpreter + imports) included; the server itself reports its own ready time.
    assert healthy_after < HEALTHY_BOUND_S, healthy_after
