"""Restart with thousands of invocations in flight, side by side: invocations suspended on sleeps,
waiting on awakeables and running (busy in a `ctx.run`) when the server is SIGKILLed; then how
long until the restarted server answers a new call, and until every one of them is resumed.

    python -m bench.inflight --sleep 4500 --awakeable 4500 --running 500

Per server (fresh server and SDK process each, official Python SDK, `tests/reliability/services/inflight.py`):
the awakeable waiters are sent first (their send rate sets the schedule), then the sleepers and
the runners, all aimed at one instant T far enough ahead for the sends to finish: sleepers sleep
until T, runners stay inside one `ctx.run` until T. The server is killed 2 s before T and
restarted 1 s after it, so at the restart every sleeper is due and every runner's attempt is
lost. From the restart: healthy, a new `Greeter/greet` answered, every sleeper and runner
completed (re-attempted from its journal), every awakeable resolved (the client posts the
resolutions) and its invocation completed; and the server's CPU over that recovery.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx

from bench.procstat import tree_cpu_s
from bench.starvation import greet
from tests.reliability.test_starvation import INFLIGHT_MODULE, bounded
from tests.support import PythonService, make_server, register
from tests.support.client import Ingress, query
from tests.support.paths import restate_installed

DONE = "SELECT COUNT(*) AS n FROM sys_invocation WHERE target_service_name = '{}' AND status = 'completed'"
PARKED = "SELECT COUNT(*) AS n FROM state WHERE service_name = 'Parked'"
PARKED_IDS = "SELECT value_utf8 FROM state WHERE service_name = 'Parked'"
WAIT_S = 600.0


def count(admin_url: str, sql: str) -> int:
    """COUNT(*) of a query, or -1 while the restarted server cannot answer it yet."""
    try:
        rows = query(admin_url, sql)
    except httpx.HTTPError:
        return -1
    return int(rows[0]["n"]) if rows else 0


async def until_true(check: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `check()` holds (polled), or inf past the timeout."""
    t0 = time.monotonic()
    while not await asyncio.to_thread(check):
        if time.monotonic() - t0 > timeout_s:
            return float("inf")
        await asyncio.sleep(0.2)
    return time.monotonic() - t0


async def send_all(url: str, paths_bodies: list[tuple[str, Any]]) -> None:
    async with Ingress(url) as ing:
        sent = await bounded([ing.send(p, b) for p, b in paths_bodies])
    bad = [s.status_code for s in sent if s.status_code != 202]
    if bad:
        raise RuntimeError(f"{len(bad)} sends failed: {bad[:5]}")


async def resolve_all(url: str, admin_url: str) -> int:
    ids = [r["value_utf8"].strip('"') for r in query(admin_url, PARKED_IDS)]
    async with Ingress(url) as ing:
        resolved = await bounded(
            [ing.http.post(f"/restate/awakeables/{i}/resolve", json="done") for i in ids]
        )
    bad = [r.status_code for r in resolved if r.status_code not in (200, 202)]
    if bad:
        raise RuntimeError(f"{len(bad)} resolutions failed: {bad[:5]}")
    return len(ids)


async def after_restart(
    *waits: Coroutine[Any, Any, float], pids: tuple[int, int], samples: list[tuple[float, float, float]]
) -> list[float]:
    """All at once from the moment the server is healthy: each one's seconds; meanwhile, every
    second, the CPU seconds used so far by the server and by the service (`pids`)."""
    t0 = time.monotonic()
    base = [tree_cpu_s(p) for p in pids]

    async def sample() -> None:
        while True:
            await asyncio.sleep(1.0)
            cpu = [tree_cpu_s(p) - b for p, b in zip(pids, base, strict=True)]
            samples.append((time.monotonic() - t0, cpu[0], cpu[1]))

    async with asyncio.TaskGroup() as tg:
        sampler = tg.create_task(sample())
        done = list(await asyncio.gather(*waits))
        sampler.cancel()
    return done


def sleep_until(t_s: float) -> None:
    time.sleep(max(0.0, t_s - time.time()))


def run_one(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = make_server(kind, workdir / f"{kind}-data")
    svc = PythonService(INFLIGHT_MODULE, "app", log_dir=workdir, name=f"inflight-{kind}")
    url = server.ingress_url
    with server, svc:
        register(server.admin_url, svc.url)
        t0 = time.monotonic()
        asyncio.run(send_all(url, [(f"Parked/p{i}/wait", None) for i in range(args.awakeable)]))
        per_send_s = (time.monotonic() - t0) / max(1, args.awakeable)
        at_s = time.time() + args.margin + 1.5 * per_send_s * (args.sleep + args.running)
        asyncio.run(
            send_all(
                url,
                [("Sleeper/until", at_s)] * args.sleep + [("Runner/until", at_s)] * args.running,
            )
        )
        parked = asyncio.run(until_true(lambda: count(server.admin_url, PARKED) >= args.awakeable, WAIT_S))
        early = count(server.admin_url, DONE.format("Sleeper")) + count(
            server.admin_url, DONE.format("Runner")
        )
        if time.time() > at_s - 3 or early:
            raise RuntimeError(f"the sends ran past the wake-up ({early} already done): raise --margin")
        greet_before_s = asyncio.run(greet(url, args.greet_timeout))
        sleep_until(at_s - 2)
        server.kill()
        sleep_until(at_s + 1)
        t_restart = time.monotonic()
        server.start()
        healthy_s = time.monotonic() - t_restart
        cpu0 = tree_cpu_s(server.pid)  # start-up CPU up to health is counted apart
        svc_cpu0 = tree_cpu_s(svc.pid)
        samples: list[tuple[float, float, float]] = []
        greet_s, sleepers_s, runners_s = (
            healthy_s + x
            for x in asyncio.run(
                after_restart(
                    greet(url, args.greet_timeout),
                    until_true(lambda: count(server.admin_url, DONE.format("Sleeper")) >= args.sleep, WAIT_S),
                    until_true(
                        lambda: count(server.admin_url, DONE.format("Runner")) >= args.running, WAIT_S
                    ),
                    pids=(server.pid, svc.pid),
                    samples=samples,
                )
            )
        )
        recovery_cpu_s = tree_cpu_s(server.pid) - cpu0
        service_cpu_s = tree_cpu_s(svc.pid) - svc_cpu0
        for t, a, b in samples:
            print(
                f"  {kind} +{healthy_s + t:5.1f}s CPU so far: server {a:5.1f}s, service {b:5.1f}s",
                file=sys.stderr,
            )
        t_resolve = time.monotonic()
        resolved = asyncio.run(resolve_all(url, server.admin_url))
        awakeables_s = (
            time.monotonic()
            - t_resolve
            + asyncio.run(
                until_true(lambda: count(server.admin_url, DONE.format("Parked")) >= args.awakeable, WAIT_S)
            )
        )
    return {
        "server": kind,
        "awakeables_stored_s": parked,
        "greet_before_kill_s": greet_before_s,
        "healthy_s": healthy_s,
        "greet_after_restart_s": greet_s,
        "sleepers_done_s": sleepers_s,
        "runners_done_s": runners_s,
        "recovery_cpu_s": recovery_cpu_s,
        "service_cpu_s": service_cpu_s,
        "resolved": resolved,
        "awakeables_done_after_resolving_s": awakeables_s,
    }


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--sleep", type=int, default=4500)
    parser.add_argument("--awakeable", type=int, default=4500)
    parser.add_argument("--running", type=int, default=500)
    parser.add_argument("--margin", type=float, default=30.0, help="extra seconds before the wake-up")
    parser.add_argument("--servers", default="perdure,restate")
    parser.add_argument("--greet-timeout", type=float, default=300.0)
    parser.add_argument("--workdir", type=Path, default=None, help="keep data and logs here")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k and (k != "restate" or restate_installed())]
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-inflight-") as tmp_dir:
        for kind in kinds:
            print(
                f"{kind}: {args.sleep} sleeping, {args.awakeable} on awakeables, {args.running} running …",
                file=sys.stderr,
                flush=True,
            )
            rows.append(run_one(kind, args, Path(args.workdir or tmp_dir)))
    keys = (
        "healthy_s",
        "greet_after_restart_s",
        "sleepers_done_s",
        "runners_done_s",
        "recovery_cpu_s",
        "service_cpu_s",
        "awakeables_done_after_resolving_s",
    )
    print(f"{'server':8} " + " ".join(f"{k:>20}" for k in keys) + "  (seconds from the restart)")
    for r in rows:
        print(f"{r['server']:8} " + " ".join(f"{float(r[k]):20.2f}" for k in keys))
    print(
        json.dumps({"sleep": args.sleep, "awakeable": args.awakeable, "running": args.running, "rows": rows})
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
