"""The official `restate` CLI run as a process against a server."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.paths import restate_cli_binary
from tests.support.servers import Server

CLI_TIMEOUT_S = 60.0


def restate_cli(
    server: Server, home: Path, *args: str, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The official CLI with RESTATE_ADMIN_URL pointed at `server` and an empty config home."""
    env = dict(os.environ)
    env.update(
        RESTATE_ADMIN_URL=server.admin_url, RESTATE_CLI_CONFIG_HOME=str(home), NO_COLOR="1", COLUMNS="200"
    )
    env.update(extra_env or {})
    return subprocess.run(
        [str(restate_cli_binary()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
