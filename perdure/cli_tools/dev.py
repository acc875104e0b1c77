"""`perdure dev MODULE:APP`: one command for local development. Starts the
server, serves the service app with hypercorn (h2c), registers it, and stops
both on Ctrl-C. Works for services written with `perdure` or `restate`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

READY_TIMEOUT_S = 20.0


def _wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise typer.Exit(code=_fail(f"{what} exited with code {proc.returncode}"))
        try:
            httpx.get(url, timeout=0.5)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise typer.Exit(code=_fail(f"{what} did not answer at {url} within {READY_TIMEOUT_S:.0f}s"))


def _fail(message: str) -> int:
    typer.echo(f"perdure dev: {message}", err=True)
    return 1


def dev(
    app_ref: str = typer.Argument(
        ..., help="The service app, as MODULE:ATTRIBUTE (e.g. examples.greeter:app)."
    ),
    service_port: int = typer.Option(9080, help="Port the service app listens on."),
    data_dir: Path = typer.Option(Path("perdure-data"), envvar="PERDURE_DATA_DIR", help="Server data."),
    ingress_address: str = typer.Option("127.0.0.1:8080", envvar="PERDURE_INGRESS_ADDRESS"),
    admin_address: str = typer.Option("127.0.0.1:9070", envvar="PERDURE_ADMIN_ADDRESS"),
) -> None:
    """Run the server and a service app together, with the app registered."""
    if ":" not in app_ref:
        raise typer.BadParameter("expected MODULE:ATTRIBUTE", param_hint="APP_REF")
    server_cmd = [
        sys.executable, "-m", "perdure.cli", "server", "--data-dir", str(data_dir),
        "--ingress-address", ingress_address, "--admin-address", admin_address,
    ]  # fmt: skip
    service_cmd = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{service_port}", app_ref]
    admin_url = f"http://{admin_address}"
    service_url = f"http://127.0.0.1:{service_port}"
    server = subprocess.Popen(server_cmd)
    service = subprocess.Popen(service_cmd)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        _wait_ready(f"{admin_url}/health", server, "the server")
        _wait_ready(f"{service_url}/discover", service, "the service app")
        resp = httpx.post(f"{admin_url}/deployments", json={"uri": service_url, "force": True}, timeout=30)
        if resp.status_code >= 300:
            raise typer.Exit(code=_fail(f"registration failed: {resp.status_code} {resp.text}"))
        names = ", ".join(s["name"] for s in resp.json().get("services", []))
        typer.echo(f"perdure dev: {names} registered from {service_url}; ingress http://{ingress_address}")
        while not stopping and server.poll() is None and service.poll() is None:
            time.sleep(0.1)
    finally:
        for proc in (service, server):
            if proc.poll() is None:
                proc.terminate()
        for proc in (service, server):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
