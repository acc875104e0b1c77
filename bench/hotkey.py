"""Thousands of invocations queued on one virtual-object key, side by side: all complete, in
order; how fast the queue drains, and whether the cost per invocation stays flat as it drains.

    python -m bench.hotkey --n 10000

Per server (fresh server and SDK process each, `bench/objects_service.py`): `Hot/hot/hold` takes
the key and waits on an awakeable; N one-way sends of `Hot/hot/add` (n = 1..N, one after the
other, so each is accepted before the next is sent) queue behind it; then the awakeable is
resolved and the queue drains while the bench polls the shared `Hot/hot/progress` (never queued)
and samples the server's CPU. Each `add` checks it follows the previous one. The table shows the
drain time, the mean drain rate, the invocations that ran out of order, and per tenth of the
queue the drain rate and the server CPU per invocation (first tenth, last tenth, and their ratio).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.replay import CpuSampler, interpolate
from tests.support import PythonService, make_server, register
from tests.support.client import query
from tests.support.paths import restate_installed

HOLD_ID = "SELECT value_utf8 FROM state WHERE service_name = 'Hot' AND key = 'awakeable'"
POLL_S = 0.25
DRAIN_TIMEOUT_S = 1800.0
TENTHS = 10


def awakeable_id(admin_url: str, timeout_s: float = 60.0) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows = query(admin_url, HOLD_ID)
        if rows:
            return str(rows[0]["value_utf8"]).strip('"')
        time.sleep(0.2)
    raise RuntimeError("Hot/hot/hold never stored its awakeable id")


def drain_curve(
    samples: list[tuple[float, int]], cpu: CpuSampler, n: int, t0: float
) -> list[dict[str, float]]:
    """Per tenth of the queue: seconds it took, invocations per second, server CPU ms each."""
    out = []
    times = [t0] + [t for t, _ in samples]
    done_at = [0.0] + [float(last) for _, last in samples]
    prev_t, prev_done = t0, 0
    for k in range(1, TENTHS + 1):
        bound = n * k // TENTHS
        t = interpolate(done_at, times, bound)  # `last` only grows: time as a function of it
        dt = max(t - prev_t, 1e-9)
        done = bound - prev_done
        ms = (cpu.at(t) - cpu.at(prev_t)) * 1000.0 / done
        out.append({"tenth": float(k), "s": dt, "per_s": done / dt, "cpu_ms_per_inv": ms})
        prev_t, prev_done = t, bound
    return out


def run_one(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    server = make_server(kind, workdir / f"{kind}-data")
    svc = PythonService("bench.objects_service", "app", log_dir=workdir, name=f"hotkey-{kind}")
    with server, svc, httpx.Client(base_url=server.ingress_url, timeout=60.0) as client:
        register(server.admin_url, svc.url)
        client.post("/Hot/hot/hold/send").raise_for_status()
        hold = awakeable_id(server.admin_url)
        t_send = time.monotonic()
        for i in range(1, args.n + 1):
            client.post("/Hot/hot/add/send", json=i).raise_for_status()
        sent_s = time.monotonic() - t_send
        samples: list[tuple[float, int]] = []
        with CpuSampler(server.pid) as cpu:
            time.sleep(0.3)
            t0 = time.time()
            client.post(f"/restate/awakeables/{hold}/resolve", json="go").raise_for_status()
            progress: dict[str, int] = {"last": 0, "out_of_order": 0}
            while progress["last"] < args.n and time.time() - t0 < DRAIN_TIMEOUT_S:
                time.sleep(POLL_S)
                progress = client.get("/Hot/hot/progress").json()
                samples.append((time.time(), int(progress["last"])))
            time.sleep(0.3)
        if progress["last"] < args.n:
            raise RuntimeError(f"{kind}: only {progress['last']} of {args.n} ran in {DRAIN_TIMEOUT_S} s")
    curve = drain_curve(samples, cpu, args.n, t0)
    drain_s = sum(c["s"] for c in curve)
    return {
        "server": kind,
        "sent_s": sent_s,
        "drain_s": drain_s,
        "drain_per_s": args.n / drain_s,
        "out_of_order": progress["out_of_order"],
        "first_tenth_cpu_ms": curve[0]["cpu_ms_per_inv"],
        "last_tenth_cpu_ms": curve[-1]["cpu_ms_per_inv"],
        "last_over_first": curve[-1]["cpu_ms_per_inv"] / curve[0]["cpu_ms_per_inv"],
        "curve": curve,
    }


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--servers", default="perdure,restate")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k and (k != "restate" or restate_installed())]
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-hotkey-") as tmp:
        for kind in kinds:
            print(f"{kind}: {args.n} queued on one key …", file=sys.stderr, flush=True)
            rows.append(run_one(kind, args, Path(tmp)))
    for r in rows:
        print(f"{r['server']}: per tenth of the queue, inv/s and server CPU ms/inv:")
        print("  " + "  ".join(f"{c['per_s']:6.0f}/{c['cpu_ms_per_inv']:5.2f}" for c in r["curve"]))
    keys = (
        "sent_s",
        "drain_s",
        "drain_per_s",
        "out_of_order",
        "first_tenth_cpu_ms",
        "last_tenth_cpu_ms",
        "last_over_first",
    )
    print(f"{'server':8} " + " ".join(f"{k:>18}" for k in keys))
    for r in rows:
        print(f"{r['server']:8} " + " ".join(f"{float(r[k]):18.2f}" for k in keys))
    print(json.dumps({"n": args.n, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
