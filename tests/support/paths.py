"""Where the repository, the venv and the Node test oracles live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = REPO_ROOT / "tests" / "node"
NODE_MODULES = NODE_DIR / "node_modules"


def venv_bin(name: str) -> Path:
    """An executable of the interpreter's environment (the project's .venv when run from it)."""
    return Path(sys.executable).parent / name


def perdure_executable() -> Path:
    """The `perdure` console script, overridable with PERDURE_BIN."""
    override = os.environ.get("PERDURE_BIN")
    if override:
        return Path(override)
    candidate = venv_bin("perdure")
    return candidate if candidate.exists() else REPO_ROOT / ".venv" / "bin" / "perdure"


def _first_existing(candidates: list[Path], what: str) -> Path:
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    tried = "\n  ".join(str(p) for p in candidates)
    raise FileNotFoundError(f"{what} not found (run `make deps-node`); tried:\n  {tried}")


def restate_server_binary() -> Path:
    """The real restate-server 1.7.12 binary from the npm package (RESTATE_SERVER_BIN overrides)."""
    override = os.environ.get("RESTATE_SERVER_BIN")
    scoped = NODE_MODULES / "@restatedev"
    candidates = [Path(override)] if override else []
    candidates += sorted(scoped.glob("restate-server-*/bin/restate-server"))
    candidates += sorted(
        scoped.glob("restate-server/node_modules/@restatedev/restate-server-*/bin/restate-server")
    )
    return _first_existing(candidates, "restate-server binary")


def restate_cli_binary() -> Path:
    """The official `restate` CLI binary from the npm package."""
    scoped = NODE_MODULES / "@restatedev"
    candidates = sorted(scoped.glob("restate-linux-*/bin/restate"))
    candidates += sorted(scoped.glob("restate/node_modules/@restatedev/restate-*/bin/restate"))
    return _first_existing(candidates, "restate CLI binary")


def restate_installed() -> bool:
    try:
        restate_server_binary()
    except FileNotFoundError:
        return False
    return True
