"""Where the Perdure server's time goes under load: Python by subsystem, and system calls per invocation.

Runs one scenario of `bench.run` (official-SDK service, the same load generator) against a fresh
`perdure server` and attaches, for the measured phase only, either

- `py-spy record --gil` (samples of the thread holding the GIL, i.e. the Python part of the CPU),
  folded into the server's subsystems (ingress, invoker, the h2 library, processor, storage, ...), or
- `strace -c -f` (every system call of every thread), divided by the completed invocations.

    .venv/bin/python -m bench.profile --tool py-spy --n 15000
    .venv/bin/python -m bench.profile --tool strace --n 5000 --scenario counter

py-spy is installed on demand into the venv (`pip install py-spy`); strace comes from Debian. Both
slow the server down (strace a lot): read the shares and counts, not the throughput.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.loadgen import warmed_load
from bench.run import SCENARIOS, add_sdk_args
from tests.support import PythonService, make_server, register

# Innermost frame matching a pattern names the subsystem a sample is charged to (first match wins).
SUBSYSTEMS: tuple[tuple[str, str], ...] = (
    ("hpack/", "hpack"),
    ("hyperframe/", "hyperframe"),
    ("/h2/", "h2 library"),
    ("(h2/", "h2 library"),
    ("invoker/h2", "invoker: h2 connection/client"),
    ("invoker/attempt", "invoker: attempt"),
    ("invoker/", "invoker: other"),
    ("uvicorn/", "uvicorn"),
    ("server/ingress/", "ingress"),
    ("server/processor/", "processor"),
    ("server/runtime.py", "runtime"),
    ("server/storage/", "storage"),
    ("telemetry", "telemetry"),
    ("prometheus_client", "telemetry"),
    ("perdure/protocol/", "protocol"),
    ("concurrent/futures", "thread pool hand-off"),
    ("asyncio/", "asyncio"),
    ("threading.py", "threading"),
)


def fold_py_spy(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """Samples per subsystem, and per innermost frame (self time), from py-spy's raw
    (collapsed) output."""
    shares: collections.Counter[str] = collections.Counter()
    frames_self: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        total += int(count)
        frames = stack.split(";")
        shares[_subsystem(frames)] += int(count)
        frames_self[frames[-1]] += int(count)
    return total, shares, frames_self


def _subsystem(frames: list[str]) -> str:
    for frame in reversed(frames):
        for pattern, name in SUBSYSTEMS:
            if pattern in frame:
                return name
    return "other"


_STRACE_ROW = re.compile(r"^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$")


def parse_strace(summary: Path) -> dict[str, int]:
    """Calls per system call from `strace -c` output."""
    calls: dict[str, int] = {}
    for line in summary.read_text().splitlines():
        m = _STRACE_ROW.match(line)
        if m and m.group(2) != "total":
            calls[m.group(2)] = int(m.group(1))
    return calls


def _tool_argv(tool: str, pid: int, out: Path) -> list[str]:
    if tool == "py-spy":
        spy = Path(sys.executable).parent / "py-spy"
        if not spy.exists():
            subprocess.run([sys.executable, "-m", "pip", "install", "-q", "py-spy"], check=True)
        return [
            str(spy),
            "record",
            "-p",
            str(pid),
            "-r",
            "200",
            "-f",
            "raw",
            "-o",
            str(out),
            "--gil",
            "--nonblocking",
        ]
    strace = shutil.which("strace")
    if strace is None:
        raise SystemExit("strace is not installed (apt-get install strace)")
    return [strace, "-c", "-f", "-p", str(pid), "-o", str(out)]


def profile(args: argparse.Namespace, work: Path) -> tuple[Path, int]:
    out = work / ("py-spy.txt" if args.tool == "py-spy" else "strace.txt")
    path, body = SCENARIOS[args.scenario]
    with (
        make_server("perdure", work / "server") as server,
        PythonService(
            "bench.greeter", "app", log_dir=work, name="greeter", hypercorn_args=args.sdk_args
        ) as sdk,
    ):
        register(server.admin_url, sdk.url)
        extra = ["--path", path, "--body", body]
        with warmed_load(
            server.ingress_port, n=args.n, concurrency=args.concurrency, warmup=300, extra=extra
        ) as load:
            tracer = subprocess.Popen(
                _tool_argv(args.tool, server.pid, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            time.sleep(1.0)  # attached before the measured phase starts
            summary = load.go()
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=120)
    print(json.dumps(summary))
    return out, int(summary["ok"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tool", choices=("py-spy", "strace"), default="py-spy")
    add_sdk_args(parser)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="greeter")
    parser.add_argument("--n", type=int, default=15000)
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    parser.add_argument("--top", type=int, default=0, help="also list the N frames with most self time")
    parser.add_argument("--keep", type=Path, help="copy the tool's raw output here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perdure-profile-") as tmp:
        out, ok = profile(args, Path(tmp))
        if args.keep is not None:
            shutil.copyfile(out, args.keep)
        if args.tool == "py-spy":
            total, shares, frames_self = fold_py_spy(out)
            print(f"{total} samples holding the GIL over {ok} invocations")
            for name, count in shares.most_common():
                print(f"{100.0 * count / max(1, total):5.1f}%  {name}")
            if args.top:
                print(f"frames with the most self time (top {args.top}):")
                for frame, count in frames_self.most_common(args.top):
                    print(f"{100.0 * count / max(1, total):5.1f}%  {frame}")
        else:
            calls = parse_strace(out)
            print(f"system calls per invocation ({ok} invocations):")
            for name, count in sorted(calls.items(), key=lambda kv: -kv[1]):
                if count / ok >= 0.05:
                    print(f"{count / ok:8.2f}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
