"""Service endpoints (SDK processes) for the servers to invoke.

`PythonService` serves any ASGI app (official `restate` SDK or Perdure's SDK) with hypercorn,
which speaks HTTP/1.1 and h2c (HTTP/2 prior knowledge over cleartext) on one port with its
default config. `NodeService` runs a CommonJS service file with the official TypeScript SDK
resolved from tests/node/node_modules (via NODE_PATH, which ESM imports do not honour).
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.paths import NODE_MODULES, REPO_ROOT
from tests.support.ports import free_port, port_accepts
from tests.support.process import ManagedProcess

NODE_PRELOAD = Path(__file__).with_name("node_preload.cjs")


def _default_log_dir() -> Path:
    path = Path(tempfile.gettempdir()) / "perdure-test-logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _service_env(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    pythonpath = [str(REPO_ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env.update(extra or {})
    return env


class ServiceProcess(ManagedProcess):
    """An SDK endpoint listening on 127.0.0.1:port; ready when the port accepts connections."""

    def __init__(
        self, name: str, argv: list[str], port: int, env: dict[str, str], log_dir: Path | None
    ) -> None:
        self.port = port
        log_path = (log_dir or _default_log_dir()) / f"{name}-{port}.log"
        super().__init__(name, argv, log_path, env=env, cwd=REPO_ROOT, ready=lambda: port_accepts(port))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class PythonService(ServiceProcess):
    """`module_or_file:app_attr` served by hypercorn; a dotted module is resolved from the repo root."""

    def __init__(
        self,
        module_or_file: str | Path,
        app_attr: str = "app",
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        name: str | None = None,
        hypercorn_args: Sequence[str] = (),
    ) -> None:
        target = str(module_or_file)
        if target.endswith(".py"):
            target = str(Path(target).resolve())
        port = port or free_port()
        argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", *hypercorn_args]
        argv.append(f"{target}:{app_attr}")
        label = name or Path(target).stem.rsplit(".", 1)[-1]
        super().__init__(f"py-{label}", argv, port, _service_env(env), log_dir)


class NodeService(ServiceProcess):
    """`node js_file` with the official TS SDK; the file reads its port from the PORT env var."""

    def __init__(
        self,
        js_file: str | Path,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        name: str | None = None,
    ) -> None:
        path = Path(js_file).resolve()
        port = port or free_port()
        full_env = _service_env(env)
        full_env["NODE_PATH"] = str(NODE_MODULES)
        full_env["PORT"] = str(port)
        argv = ["node", "--require", str(NODE_PRELOAD), str(path)]
        super().__init__(f"node-{name or path.stem}", argv, port, full_env, log_dir)
