"""Liveness under waiting load, side by side: N invocations that only wait (a 10-minute sleep,
an awakeable, or a call to an endpoint that answers late), then a new `Greeter/greet` call; then
SIGKILL, restart, and a new call again. Same official-SDK service, same machine, both servers.

    python -m bench.starvation --n 10000 --wait sleep        # also: --wait awakeable, --wait slow

Prints, per server: time to send the N, latency of the new call after the sends, time to healthy
after a SIGKILL, and latency of the first new call after the restart (from the restart).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.reliability.test_starvation import bounded
from tests.support import PythonService, make_server, register
from tests.support.client import Ingress
from tests.support.paths import restate_installed

GREET_TIMEOUT_S = 300.0
SERVICE = "tests.reliability.services.waiting"


async def greet(ingress_url: str, timeout_s: float) -> float:
    """Seconds until Greeter/greet answers (connection errors retried), or inf past the timeout."""
    t0 = time.monotonic()
    async with Ingress(ingress_url, timeout_s=timeout_s) as ing:
        while time.monotonic() - t0 < timeout_s:
            try:
                resp = await ing.call("Greeter/greet", "Ann")
                if resp.status_code == 200:
                    return time.monotonic() - t0
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    return float("inf")


async def send_waiters(ingress_url: str, kind: str, n: int) -> None:
    async with Ingress(ingress_url) as ing:
        if kind == "sleep":
            coros = [ing.send("Sleeper/until", time.time() + 600) for _ in range(n)]
        elif kind == "awakeable":
            coros = [ing.send(f"Parked/p{i}/wait") for i in range(n)]
        else:
            coros = [ing.send("Slow/echo", f"m{i}") for i in range(n)]
        sent = await bounded(coros)
    bad = [s.status_code for s in sent if s.status_code != 202]
    if bad:
        raise RuntimeError(f"{len(bad)} sends failed: {bad[:5]}")


def run_one(server_kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = make_server(server_kind, workdir / f"{server_kind}-data")
    svc = PythonService(
        "tests.reliability.services.waiting", "app", log_dir=workdir, name=f"waiting-{server_kind}"
    )
    with server, svc:
        register(server.admin_url, svc.url)
        t0 = time.monotonic()
        asyncio.run(send_waiters(server.ingress_url, args.wait, args.n))
        sent_s = time.monotonic() - t0
        before_s = asyncio.run(greet(server.ingress_url, args.greet_timeout))
        settle_s = asyncio.run(greet(server.ingress_url, args.greet_timeout))
        time.sleep(args.settle)
        server.kill()
        t1 = time.monotonic()
        server.start()
        healthy_s = time.monotonic() - t1
        after_s = healthy_s + asyncio.run(greet(server.ingress_url, args.greet_timeout))
    return {
        "server": server_kind,
        "sent_s": sent_s,
        "greet_after_sends_s": before_s,
        "greet_again_s": settle_s,
        "healthy_after_kill_s": healthy_s,
        "greet_after_restart_s": after_s,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--wait", choices=("sleep", "awakeable", "slow"), default="sleep")
    parser.add_argument("--servers", default="perdure,restate")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between the new call and the kill")
    parser.add_argument("--greet-timeout", type=float, default=GREET_TIMEOUT_S)
    parser.add_argument("--workdir", type=Path, default=None, help="keep data and logs here")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k and (k != "restate" or restate_installed())]
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-starvation-") as tmp_dir:
        tmp = args.workdir or tmp_dir
        for kind in kinds:
            print(f"{kind}: {args.n} waiting ({args.wait}) …", file=sys.stderr, flush=True)
            rows.append(run_one(kind, args, Path(tmp)))
    heads = ("sent s", "greet s", "again s", "healthy s", "greet after restart s")
    print(f"{'server':8} " + " ".join(f"{h:>10}" for h in heads))
    for r in rows:
        print(
            f"{r['server']:8} {r['sent_s']:10.1f} {r['greet_after_sends_s']:10.2f} {r['greet_again_s']:10.2f}"
            f" {r['healthy_after_kill_s']:10.2f} {r['greet_after_restart_s']:10.2f}"
        )
    print(json.dumps({"n": args.n, "wait": args.wait, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
