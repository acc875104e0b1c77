"""The service app process of `perdure dev`: serves MODULE:ATTRIBUTE with hypercorn (h2c).

    python -m perdure.cli_tools.dev_app MODULE:ATTRIBUTE --port 9080
    python -m perdure.cli_tools.dev_app MODULE:ATTRIBUTE --standby --watch DIR

`--standby` is the warm spare a reload uses: it starts the interpreter and imports hypercorn and
the SDKs ahead of time, then waits for a port on stdin; only then does it import the user's
module (so it sees the edit) and serve. If a module it imported early lives under the watched
directory and changed since, it exits with STALE_EXIT instead, and `perdure dev` starts the app
cold."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

STALE_EXIT = 3
PRELOADED = ("hypercorn.asyncio", "hypercorn.config", "perdure.sdk", "restate")


def _preload() -> None:
    for name in PRELOADED:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)


def _stale(watch: Path, since_ns: int) -> str | None:
    """A preloaded module under `watch` whose file changed after `since_ns`, if any."""
    root = watch.resolve()
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if root in path.parents and path.stat().st_mtime_ns > since_ns:
            return str(path)
    return None


def _load(app_ref: str) -> Any:
    module_name, _, attr = app_ref.partition(":")
    app = importlib.import_module(module_name)
    for part in attr.split("."):
        app = getattr(app, part)
    return app


async def _serve(app: Any, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(app, config, shutdown_trigger=stop.wait)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="perdure-dev-app")
    parser.add_argument("app_ref")
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument("--standby", action="store_true")
    parser.add_argument("--watch", type=Path, default=Path("."))
    args = parser.parse_args(argv)
    port = args.port
    if args.standby:
        started_ns = time.time_ns()
        _preload()
        line = sys.stdin.readline()
        if not line.strip():
            return 0  # `perdure dev` stopped without needing this spare
        port = int(line)
        changed = _stale(args.watch, started_ns)
        if changed is not None:
            print(f"perdure dev: spare app process is stale ({changed} changed)", file=sys.stderr)
            return STALE_EXIT
    if port is None:
        parser.error("--port is required without --standby")
    sys.path.insert(0, str(Path.cwd()))
    asyncio.run(_serve(_load(args.app_ref), port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
