"""A subprocess in its own process group, output in a log file, killed as a group on teardown.

Every started process is tracked so a failing test can print the tails of their logs and so
nothing outlives the test session (atexit kills whatever is left).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

_LIVE: dict[int, ManagedProcess] = {}
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
LOG_TAIL_LINES = 60


def live_processes() -> list[ManagedProcess]:
    """Processes started and not yet killed, oldest first."""
    return list(_LIVE.values())


class ProcessFailedToStart(RuntimeError):
    """The process exited or did not become ready in time; the message carries its log tail."""


class ManagedProcess:
    """One long-running child: `start()` waits until `ready()` holds, `kill()` SIGKILLs the group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        ready: Callable[[], bool] | None = None,
        ready_timeout_s: float = READY_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(os.environ if env is None else env)
        self.cwd = cwd
        self._ready = ready
        self.ready_timeout_s = ready_timeout_s
        self._popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """Pid of the group leader (the process we started)."""
        assert self._popen is not None, f"{self.name} is not running"
        return self._popen.pid

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def start(self) -> None:
        """Spawn in a new session (so the group can be killed) and block until ready."""
        assert self._popen is None, f"{self.name} already started"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n===== start {self.name}: {' '.join(self.argv)}\n".encode())
        self._log.flush()
        self._popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,
        )
        _LIVE[id(self)] = self
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            if self._popen is not None and self._popen.poll() is not None:
                code = self._popen.returncode
                self.kill()
                raise ProcessFailedToStart(f"{self.name} exited with {code}\n{self.log_tail()}")
            if self._ready is None or self._ready():
                return
            if time.monotonic() > deadline:
                self.kill()
                raise ProcessFailedToStart(
                    f"{self.name} not ready after {self.ready_timeout_s}s\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self._popen is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, no chance to clean up) and reap the leader."""
        if self._popen is None:
            return
        self._signal_group(signal.SIGKILL)
        self._popen.wait()
        self._forget()

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM the group, SIGKILL it if it is still there after `grace_s`."""
        if self._popen is None:
            return
        self._signal_group(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._popen.wait(timeout=grace_s)
        self.kill()

    def restart(self) -> None:
        """Kill (if running) and start again with the same command, environment and data."""
        self.kill()
        self.start()

    def _forget(self) -> None:
        # Members of the group may outlive the leader for a moment; kill them too.
        self._signal_group(signal.SIGKILL)
        self._popen = None
        _LIVE.pop(id(self), None)
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """Last `lines` lines of the combined stdout/stderr log."""
        try:
            text = self.log_path.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()


@atexit.register
def _kill_leftovers() -> None:
    for proc in live_processes():
        proc.kill()
