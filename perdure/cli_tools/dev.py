"""`perdure dev MODULE:APP`: one command for local development. Starts the
server, serves the service app with hypercorn (h2c), registers it, and stops
both on Ctrl-C. Works for services written with `perdure` or `restate`.

With `--reload` (the default), a change to a `.py` file under the watched
directory starts the app again in a new process on a new port and registers it
as a new deployment: new invocations go to it, while invocations already
running stay pinned to the old deployment, whose process keeps serving them
(the last `RELOAD_GENERATIONS_MAX` generations are kept)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import typer

READY_TIMEOUT_S = 20.0
RELOAD_POLL_S = 0.2  # how often the watched files' modification times are read
RELOAD_GENERATIONS_MAX = 5  # app processes kept alive for invocations pinned to older deployments
SKIPPED_DIRS = frozenset(("node_modules", "__pycache__", "venv"))


def _ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = READY_TIMEOUT_S) -> str | None:
    """None once `url` answers; else why not (the process exited, or it never answered)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with code {proc.returncode}"
        try:
            httpx.get(url, timeout=0.5)
            return None
        except httpx.HTTPError:
            time.sleep(0.05)
    return f"did not answer at {url} within {timeout_s:.0f}s"


def _wait_ready(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    problem = _ready(url, proc)
    if problem is not None:
        raise typer.Exit(code=_fail(f"{what} {problem}"))


def _fail(message: str) -> int:
    typer.echo(f"perdure dev: {message}", err=True)
    return 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _snapshot(root: Path, skip: Path) -> dict[str, int]:
    """Modification time of every watched `.py` file (hidden and tool directories left out)."""
    out: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [
            d for d in dirnames if not d.startswith(".") and d not in SKIPPED_DIRS and here / d != skip
        ]
        for name in filenames:
            if name.endswith(".py"):
                path = here / name
                try:
                    out[str(path)] = path.stat().st_mtime_ns
                except FileNotFoundError:
                    continue
    return out


def _register(admin_url: str, service_url: str) -> str:
    """Register the app at `service_url`; the line to print, or raises RuntimeError."""
    resp = httpx.post(f"{admin_url}/deployments", json={"uri": service_url, "force": True}, timeout=30)
    if resp.status_code >= 300:
        raise RuntimeError(f"registration failed: {resp.status_code} {resp.text}")
    body = resp.json()
    names = ", ".join(s["name"] for s in body.get("services", []))
    return f"{names} registered from {service_url} (deployment {body.get('id')})"


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def dev(
    app_ref: str = typer.Argument(
        ..., help="The service app, as MODULE:ATTRIBUTE (e.g. examples.greeter:app)."
    ),
    service_port: int = typer.Option(9080, help="Port the service app listens on (reloads use free ports)."),
    data_dir: Path = typer.Option(Path("perdure-data"), envvar="PERDURE_DATA_DIR", help="Server data."),
    ingress_address: str = typer.Option("127.0.0.1:8080", envvar="PERDURE_INGRESS_ADDRESS"),
    admin_address: str = typer.Option("127.0.0.1:9070", envvar="PERDURE_ADMIN_ADDRESS"),
    reload: bool = typer.Option(
        True, help="Restart and re-register the app when a watched .py file changes."
    ),
    watch: Path = typer.Option(Path("."), help="Directory whose .py files are watched for --reload."),
) -> None:
    """Run the server and a service app together, with the app registered."""
    if ":" not in app_ref:
        raise typer.BadParameter("expected MODULE:ATTRIBUTE", param_hint="APP_REF")
    server_cmd = [
        sys.executable, "-m", "perdure.cli", "server", "--data-dir", str(data_dir),
        "--ingress-address", ingress_address, "--admin-address", admin_address,
    ]  # fmt: skip
    admin_url = f"http://{admin_address}"

    def start_app(port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", app_ref])

    server = subprocess.Popen(server_cmd)
    apps = [start_app(service_port)]
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        _wait_ready(f"{admin_url}/health", server, "the server")
        service_url = f"http://127.0.0.1:{service_port}"
        _wait_ready(f"{service_url}/discover", apps[0], "the service app")
        try:
            line = _register(admin_url, service_url)
        except RuntimeError as exc:
            raise typer.Exit(code=_fail(str(exc))) from None
        typer.echo(f"perdure dev: {line}; ingress http://{ingress_address}, UI {admin_url}/ui/")
        seen = _snapshot(watch, data_dir.resolve()) if reload else {}
        while not stopping and server.poll() is None:
            time.sleep(RELOAD_POLL_S)
            if not reload:
                if apps[-1].poll() is not None:
                    break
                continue
            now = _snapshot(watch, data_dir.resolve())
            if now == seen:
                continue
            seen = now
            _reload(apps, start_app, admin_url)
    finally:
        _stop([*apps, server])


def _reload(
    apps: list[subprocess.Popen[bytes]], start_app: Callable[[int], subprocess.Popen[bytes]], admin_url: str
) -> None:
    """Start the changed app as a new generation and register it; keep the old ones serving."""
    port = _free_port()
    proc = start_app(port)
    url = f"http://127.0.0.1:{port}"
    problem = _ready(f"{url}/discover", proc)
    if problem is not None:
        _stop([proc])
        _fail(f"reload failed: the changed app {problem}; the previous deployment stays")
        return
    try:
        line = _register(admin_url, url)
    except RuntimeError as exc:
        _stop([proc])
        _fail(f"reload failed: {exc}; the previous deployment stays")
        return
    apps.append(proc)
    while len(apps) > RELOAD_GENERATIONS_MAX:
        _stop([apps.pop(0)])
    typer.echo(f"perdure dev: reloaded: {line}")
