"""`perdure dev MODULE:APP`: one command for local development. Starts the
server, serves the service app with hypercorn (h2c), registers it, and stops
both on Ctrl-C. Works for services written with `perdure` or `restate`.

With `--reload` (the default), a change to a `.py` file under the watched
directory starts the app again in a new process on a new port and registers it
as a new deployment: new invocations go to it, while invocations already
running stay pinned to the old deployment, whose process keeps serving them
(the last `RELOAD_GENERATIONS_MAX` generations are kept). The server stays up
throughout, and a warm spare app process (interpreter started, hypercorn and the
SDKs imported: `dev_app --standby`) waits for the next change, so a reload costs
the import of the user's module, the discovery and the registration."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from perdure.cli_tools.dev_app import STALE_EXIT

READY_TIMEOUT_S = 20.0
RELOAD_POLL_S = 0.1  # how often the watched files' modification times are read
READY_POLL_S = 0.02
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
            time.sleep(READY_POLL_S)
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

    app_cmd = [sys.executable, "-m", "perdure.cli_tools.dev_app", app_ref]
    apps_at = _AppStarter(app_cmd, watch)
    server = subprocess.Popen(server_cmd)
    apps = [apps_at.cold(service_port)]
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
        if reload:
            apps_at.prepare_spare()
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
            _reload(apps, apps_at, admin_url)
    finally:
        apps_at.close()
        _stop([*apps, server])


class _AppStarter:
    """Starts app processes: cold, or by handing a port to the warm spare."""

    def __init__(self, cmd: list[str], watch: Path) -> None:
        self._cmd = cmd
        self._watch = watch
        self._spare: subprocess.Popen[bytes] | None = None

    def cold(self, port: int) -> subprocess.Popen[bytes]:
        return subprocess.Popen([*self._cmd, "--port", str(port)])

    def prepare_spare(self) -> None:
        self._spare = subprocess.Popen(
            [*self._cmd, "--standby", "--watch", str(self._watch)], stdin=subprocess.PIPE
        )

    def start(self, port: int) -> tuple[subprocess.Popen[bytes], str]:
        """The app on `port`, and how it started ("spare" or "cold")."""
        spare, self._spare = self._spare, None
        if spare is not None and spare.poll() is None and spare.stdin is not None:
            try:
                spare.stdin.write(f"{port}\n".encode())
                spare.stdin.close()
                return spare, "spare"
            except BrokenPipeError:
                pass
        return self.cold(port), "cold"

    def close(self) -> None:
        if self._spare is not None:
            _stop([self._spare])
            self._spare = None


def _reload(apps: list[subprocess.Popen[bytes]], starter: _AppStarter, admin_url: str) -> None:
    """Start the changed app as a new generation and register it; keep the old ones serving."""
    t_seen = time.monotonic()
    try:
        port = _free_port()
        proc, how = starter.start(port)
        url = f"http://127.0.0.1:{port}"
        problem = _ready(f"{url}/discover", proc)
        if problem is not None and how == "spare" and proc.returncode == STALE_EXIT:
            proc, how = starter.cold(port), "cold"  # the spare had imported a file that changed
            problem = _ready(f"{url}/discover", proc)
        if problem is not None:
            _stop([proc])
            _fail(f"reload failed: the changed app {problem}; the previous deployment stays")
            return
        t_ready = time.monotonic()
        try:
            line = _register(admin_url, url)
        except RuntimeError as exc:
            _stop([proc])
            _fail(f"reload failed: {exc}; the previous deployment stays")
            return
        t_done = time.monotonic()
        apps.append(proc)
        while len(apps) > RELOAD_GENERATIONS_MAX:
            _stop([apps.pop(0)])
        typer.echo(
            f"perdure dev: reloaded in {t_done - t_seen:.2f}s (app {how} {t_ready - t_seen:.2f}s,"
            f" registration {t_done - t_ready:.2f}s): {line}"
        )
    finally:
        starter.prepare_spare()
