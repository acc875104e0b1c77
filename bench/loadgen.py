"""The load generator (bench/load.py) as a child process: warmed up, then one measured phase on `go()`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.paths import REPO_ROOT

LOAD_TIMEOUT_S = 600.0


class LoadGenerator:
    """A started `bench.load` process that has finished its warm-up."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self._process = process

    def go(self) -> dict[str, Any]:
        """Run the measured phase and return the generator's summary (ok, errors, latencies)."""
        assert self._process.stdin is not None and self._process.stdout is not None
        self._process.stdin.write("go\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            raise RuntimeError("load generator exited before its results")
        summary: dict[str, Any] = json.loads(line)
        self._process.wait(timeout=LOAD_TIMEOUT_S)
        return summary


@contextmanager
def warmed_load(
    port: int, *, n: int, concurrency: int, warmup: int, extra: list[str] | None = None
) -> Iterator[LoadGenerator]:
    """Start `bench.load` against an ingress port and wait until it reports its warm-up done."""
    argv = [sys.executable, "-m", "bench.load", "--port", str(port), "--n", str(n)]
    argv += ["--concurrency", str(concurrency), "--warmup", str(warmup), *(extra or [])]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    ) as load:
        assert load.stdout is not None
        if load.stdout.readline().strip() != "ready":
            raise RuntimeError("load generator did not warm up")
        yield LoadGenerator(load)
