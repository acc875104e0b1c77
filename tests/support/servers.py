"""The two servers under test, started the same way and spoken to the same way.

`RestateServer` runs the real restate-server; `PerdureServer` runs `perdure server`. Both expose
`ingress_url`, `admin_url`, `start()`, `kill()` (SIGKILL), `stop()` and `restart()` (same ports,
same data directory).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.support.paths import perdure_executable, restate_server_binary
from tests.support.ports import free_port, port_accepts
from tests.support.postgres import postgres_available, shared_cluster
from tests.support.process import ManagedProcess

SERVER_KINDS = ("restate", "perdure", "perdure-pg")  # perdure-pg: Perdure on PostgreSQL
SERVERS_ENV = "PERDURE_TEST_SERVERS"


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class Server(ManagedProcess):
    """A durable-execution server with an ingress and an admin API on loopback ports."""

    kind: str

    def __init__(self, name: str, argv: list[str], data_dir: Path, env: dict[str, str]) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        super().__init__(name, argv, data_dir.parent / f"{data_dir.name}.log", env=env, ready=self._is_ready)

    ingress_port: int
    admin_port: int

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def _is_ready(self) -> bool:
        return _http_ok(f"{self.admin_url}/health") and port_accepts(self.ingress_port)


class RestateServer(Server):
    """The real Restate server 1.7.12 with its data under `base_dir`."""

    kind = "restate"

    def __init__(
        self, base_dir: Path, config_file: Path | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.ingress_port = free_port()
        self.admin_port = free_port()
        self.node_port = free_port()
        env = {**os.environ, **(env or {})}
        env.update(
            RESTATE_INGRESS__BIND_ADDRESS=f"127.0.0.1:{self.ingress_port}",
            RESTATE_ADMIN__BIND_ADDRESS=f"127.0.0.1:{self.admin_port}",
            RESTATE_BIND_ADDRESS=f"127.0.0.1:{self.node_port}",
            RESTATE_LISTEN_MODE="tcp",
            RESTATE_DISABLE_TELEMETRY="true",
            RESTATE_LOG_DISABLE_ANSI_CODES="true",
        )
        argv = [str(restate_server_binary()), "--base-dir", str(base_dir)]
        if config_file is not None:
            argv += ["--config-file", str(config_file)]
        super().__init__("restate-server", argv, base_dir, env)

    def _is_ready(self) -> bool:
        return _http_ok(f"{self.admin_url}/health") and _http_ok(f"{self.ingress_url}/restate/health")


class PerdureServer(Server):
    """`perdure server` with its data under `data_dir`."""

    kind = "perdure"

    def __init__(
        self,
        data_dir: Path,
        config_file: Path | None = None,
        env: Mapping[str, str] | None = None,
        store: str = "",
    ) -> None:
        self.store = store
        self.ingress_port = free_port()
        self.admin_port = free_port()
        argv = [
            str(perdure_executable()),
            "server",
            "--data-dir",
            str(data_dir),
            "--ingress-address",
            f"127.0.0.1:{self.ingress_port}",
            "--admin-address",
            f"127.0.0.1:{self.admin_port}",
        ]
        if config_file is not None:
            argv += ["--config-file", str(config_file)]
        if store:
            argv += ["--store", store]
        # Run as an installed package does: with its bytecode cached. A sandbox's
        # PYTHONDONTWRITEBYTECODE=1 makes every start compile every changed module again
        # (0.3 s of a 0.6 s start on the dev machine), which a restart figure would charge to Perdure.
        base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        super().__init__("perdure-server", argv, data_dir, {**base, **(env or {})})


def make_server(
    kind: str, data_dir: Path, config_file: Path | None = None, env: Mapping[str, str] | None = None
) -> Server:
    """A not-yet-started server of the given kind: "restate", "perdure" (SQLite) or "perdure-pg"
    (Perdure on a fresh database of the session's PostgreSQL cluster), optionally with a
    configuration file and extra environment variables (both servers read Restate's keys)."""
    if kind == "restate":
        return RestateServer(data_dir, config_file, env)
    if kind == "perdure":
        return PerdureServer(data_dir, config_file, env)
    if kind == "perdure-pg":
        srv = PerdureServer(data_dir, config_file, env, store=shared_cluster().create_database())
        srv.kind = "perdure-pg"
        return srv
    raise ValueError(f"unknown server kind {kind!r}; expected one of {SERVER_KINDS}")


def selected_servers() -> list[str]:
    """Server kinds to test against: PERDURE_TEST_SERVERS=restate,perdure,perdure-pg (default: all
    three, perdure-pg only where PostgreSQL 15 is installed; see tests/support/pg_suites.py for
    which suites run on it by default)."""
    default = [k for k in SERVER_KINDS if k != "perdure-pg" or postgres_available()]
    raw = os.environ.get(SERVERS_ENV, ",".join(default))
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in SERVER_KINDS]
    if unknown:
        raise ValueError(f"{SERVERS_ENV} has unknown kinds {unknown}; expected {SERVER_KINDS}")
    return kinds
