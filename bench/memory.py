"""Memory while invocations pass through: the server's resident set sampled every N invocations,
side by side with the real Restate server. Nothing should grow with history.

    python -m bench.memory --total 1000000 --every 50000      # --servers perdure,restate

Per server (one server and one SDK process for the whole run, the Greeter of `bench.run`): the
load runs in chunks of `--every` invocations (`bench.load`, its own process, C keep-alive
clients); after each chunk the bench reads the server tree's RSS now (VmRSS, not the peak) and
the chunk's throughput, p99 and server CPU per invocation. The table shows the curve and the
growth of RSS from the first sample to the last, per 100,000 invocations.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.procstat import tree_rss_bytes
from bench.run import drive_load
from tests.support import PythonService, make_server, register
from tests.support.paths import restate_installed

MIB = 1024 * 1024


def data_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / MIB


def run_one(kind: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    data = workdir / f"{kind}-data"
    server = make_server(kind, data)
    svc = PythonService(
        "bench.greeter",
        "app",
        log_dir=workdir,
        name=f"memory-{kind}",
        hypercorn_args=["--worker-class", "uvloop"],
    )
    chunk = argparse.Namespace(n=args.every, concurrency=args.concurrency, warmup=0)
    samples: list[dict[str, float]] = []
    t0 = time.monotonic()
    with server, svc:
        register(server.admin_url, svc.url)
        done = 0
        while done < args.total and time.monotonic() - t0 < args.max_minutes * 60:
            r = drive_load(server.ingress_port, chunk, server.pid, svc.pid)
            done += r.ok
            samples.append(
                {
                    "invocations": float(done),
                    "rss_mib": tree_rss_bytes(server.pid) / MIB,
                    "per_s": r.throughput_per_s,
                    "p99_ms": r.p99_ms,
                    "cpu_ms_per_inv": r.server_cpu_ms_per_inv,
                    "errors": float(r.errors),
                    "data_mib": data_mib(data),
                }
            )
            s = samples[-1]
            print(
                f"{kind} {done:>9}: RSS {s['rss_mib']:7.1f} MiB, {s['per_s']:5.0f}/s,"
                f" p99 {s['p99_ms']:6.0f} ms, {s['cpu_ms_per_inv']:.2f} ms/inv, data {s['data_mib']:.0f} MiB",
                file=sys.stderr,
                flush=True,
            )
    first, last = samples[0], samples[-1]
    span = max(1.0, last["invocations"] - first["invocations"])
    return {
        "server": kind,
        "invocations": last["invocations"],
        "rss_first_mib": first["rss_mib"],
        "rss_last_mib": last["rss_mib"],
        "rss_max_mib": max(s["rss_mib"] for s in samples),
        "rss_growth_mib_per_100k": (last["rss_mib"] - first["rss_mib"]) * 100_000 / span,
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=50_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--max-minutes", type=float, default=600.0, help="stop a server's run after this")
    parser.add_argument("--servers", default="perdure,restate")
    args = parser.parse_args(argv)
    kinds = [k for k in args.servers.split(",") if k and (k != "restate" or restate_installed())]
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-memory-") as tmp:
        for kind in kinds:
            rows.append(run_one(kind, args, Path(tmp)))
    for r in rows:
        print(f"{r['server']}: invocations -> RSS MiB")
        print("  " + "  ".join(f"{s['invocations'] / 1000:.0f}k:{s['rss_mib']:.0f}" for s in r["samples"]))
    keys = ("invocations", "rss_first_mib", "rss_last_mib", "rss_max_mib", "rss_growth_mib_per_100k")
    print(f"{'server':8} " + " ".join(f"{k:>24}" for k in keys))
    for r in rows:
        print(f"{r['server']:8} " + " ".join(f"{float(r[k]):24.1f}" for k in keys))
    print(json.dumps({"total": args.total, "every": args.every, "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
