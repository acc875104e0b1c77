"""A long journal replayed on a retry, side by side on Perdure and the real Restate server.

    python -m bench.replay --steps 20000

Per server (fresh server and SDK process each, official Python SDK): `Replay/steps_then_retry`
runs N `ctx.run` steps, its first attempt then fails with a retryable error, and the retry
replays the N entries from the journal and completes. The SDK process notes when the first
attempt failed and when the replay reached the end; the bench samples the server's CPU time
every 0.1 s, so the table shows, for the first attempt and for the retry separately, the wall
time and the server CPU spent (the retry's includes the backoff before it, 50 ms by default).
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType

import httpx

from bench.procstat import tree_cpu_s
from tests.support import PythonService, make_server, register
from tests.support.paths import restate_installed

TIMEOUT_S = 1800.0
SAMPLE_S = 0.1


def interpolate(xs: list[float], ys: list[float], x: float) -> float:
    """y at x on the piecewise-linear curve through (xs, ys), xs ascending; flat past the ends."""
    i = bisect.bisect_right(xs, x)
    if i == 0:
        return ys[0]
    if i == len(xs):
        return ys[-1]
    x0, x1, y0, y1 = xs[i - 1], xs[i], ys[i - 1], ys[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1


class CpuSampler:
    """Samples a process tree's CPU seconds against wall-clock time on a thread of its own."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.times: list[float] = []
        self.cpu: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.times.append(time.time())
            self.cpu.append(tree_cpu_s(self.pid))
            self._stop.wait(SAMPLE_S)

    def at(self, t: float) -> float:
        """CPU seconds at wall time `t`, interpolated between the samples around it."""
        return interpolate(self.times, self.cpu, t)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join()


def run_one(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, float | str]:
    server = make_server(kind, workdir / f"{kind}-data")
    svc = PythonService("bench.payload_service", "app", log_dir=workdir, name=f"replay-{kind}")
    with server, svc, httpx.Client(base_url=server.ingress_url, timeout=TIMEOUT_S) as client:
        register(server.admin_url, svc.url)
        client.post("/Replay/steps_then_retry", json=10).raise_for_status()  # warm-up
        with CpuSampler(server.pid) as cpu:
            t0 = time.time()
            resp = client.post("/Replay/steps_then_retry", json=args.steps)
            t1 = time.time()
            time.sleep(2 * SAMPLE_S)
        resp.raise_for_status()
        marks = resp.json()
        failed, replayed = float(marks["failed_at"]), float(marks["replayed_at"])
    return {
        "server": kind,
        "first_attempt_s": failed - t0,
        "first_attempt_cpu_s": cpu.at(failed) - cpu.at(t0),
        "retry_s": replayed - failed,
        "retry_cpu_s": cpu.at(t1) - cpu.at(failed),
        "total_s": t1 - t0,
    }


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--servers", default="perdure,restate")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k and (k != "restate" or restate_installed())]
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-replay-") as tmp:
        for kind in kinds:
            print(
                f"{kind}: {args.steps} steps, then a retry that replays them …", file=sys.stderr, flush=True
            )
            rows.append(run_one(kind, args, Path(tmp)))
    keys = ("first_attempt_s", "first_attempt_cpu_s", "retry_s", "retry_cpu_s", "total_s")
    print(f"{'server':8} " + " ".join(f"{k:>20}" for k in keys))
    for r in rows:
        print(f"{r['server']!s:8} " + " ".join(f"{float(r[k]):20.2f}" for k in keys))
    print(json.dumps({"steps": args.steps, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
