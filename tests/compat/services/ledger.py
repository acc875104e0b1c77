"""A side-effect ledger: services append `tag event` lines to the file named by LEDGER_PATH.

Tests read it to prove how often a step really ran (a journaled step must not run again after
a crash or a retry). Appends are single small writes with O_APPEND, so lines never interleave.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

LEDGER_ENV = "LEDGER_PATH"
GATE_DIR_ENV = "GATE_DIR"
LABEL_ENV = "DEPLOYMENT_LABEL"


def record(tag: str, event: str) -> None:
    """Append one `tag event` line to the ledger and fsync it."""
    path = os.environ[LEDGER_ENV]
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{tag} {event}\n".encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def events(path: Path, tag: str) -> list[str]:
    """The events recorded for `tag`, in order."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    prefix = f"{tag} "
    return [line[len(prefix) :] for line in lines if line.startswith(prefix)]


def gate_path(tag: str) -> Path:
    """The file whose existence opens the gate of `tag` (the directory is GATE_DIR)."""
    return Path(os.environ[GATE_DIR_ENV]) / tag


def label() -> str:
    """Which process (deployment) is running: the DEPLOYMENT_LABEL baked into its environment."""
    return os.environ.get(LABEL_ENV, "unlabelled")


class Ledger:
    """The test side of a ledger file: read events of a tag, wait until one shows up."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, tag: str) -> list[str]:
        return events(self.path, tag)

    def count(self, tag: str, event: str) -> int:
        return self.events(tag).count(event)

    async def wait_for(self, tag: str, event: str, timeout_s: float = 20.0) -> None:
        """Poll until `event` was recorded for `tag`; raise TimeoutError with what was seen."""
        try:
            async with asyncio.timeout(timeout_s):
                while event not in self.events(tag):
                    await asyncio.sleep(0.02)
        except TimeoutError:
            raise TimeoutError(f"{tag}: no {event!r} within {timeout_s}s; saw {self.events(tag)}") from None
