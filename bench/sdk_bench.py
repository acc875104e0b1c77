"""SDK benchmark: CPU per invocation of the SDK process, Perdure's SDK vs the official SDK.

Both serve the same Greeter (one `ctx.run`, tests/sdk/services/scenarios.py, SDK chosen by
SDK_UNDER_TEST) with hypercorn behind the same real Restate server. Rounds alternate the SDKs;
each round starts a fresh SDK process, registers it (the Greeter then routes to it), warms up and
drives N invocations at concurrency C from the separate load generator (bench/load.py), reading
the SDK process tree's CPU time from /proc. Run `python -m bench.sdk_bench` from the repo root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench.loadgen import warmed_load
from bench.procstat import tree_cpu_s
from tests.sdk.services.sdk import SDK_ENV, SDKS
from tests.support import PythonService, RestateServer, register


def measure(
    sdk: str, round_index: int, server: RestateServer, args: argparse.Namespace, workdir: Path
) -> dict[str, float]:
    """One round: fresh SDK process, register, warm up, measure CPU ms per invocation."""
    service = PythonService(
        "tests.sdk.services.scenarios",
        "app",
        env={SDK_ENV: sdk, "LEDGER_PATH": str(workdir / "ledger.txt")},
        log_dir=workdir,
        name=f"bench-{sdk}-{round_index}",
        hypercorn_args=args.sdk_args,
    )
    with service:
        register(server.admin_url, service.url)
        with warmed_load(
            server.ingress_port, n=args.n, concurrency=args.concurrency, warmup=args.warmup
        ) as load:
            cpu0 = tree_cpu_s(service.pid)
            summary = load.go()
            cpu_s = tree_cpu_s(service.pid) - cpu0
    ok = max(1, int(summary["ok"]))
    return {
        "cpu_ms_per_inv": cpu_s * 1000 / ok,
        "throughput_per_s": float(summary["throughput_per_s"]),
        "p50_ms": float(summary["p50_ms"]),
        "errors": float(summary["errors"]),
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="measured invocations per round")
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per SDK (alternating)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up invocations per round")
    parser.add_argument(
        "--sdk-args",
        default="--worker-class uvloop",
        type=lambda s: s.split(),
        help="extra hypercorn arguments",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rows: dict[str, list[dict[str, float]]] = {sdk: [] for sdk in SDKS}
    with tempfile.TemporaryDirectory(prefix="perdure-sdk-bench-") as tmp:
        workdir = Path(tmp)
        with RestateServer(workdir / "restate") as server:
            for round_index in range(args.rounds):
                for sdk in SDKS:
                    row = measure(sdk, round_index, server, args, workdir)
                    rows[sdk].append(row)
                    print(
                        f"{sdk:8} round {round_index}: {row['cpu_ms_per_inv']:.3f} ms CPU/inv, "
                        f"{row['throughput_per_s']:.0f} inv/s, p50 {row['p50_ms']:.2f} ms, "
                        f"errors {row['errors']:.0f}",
                        flush=True,
                    )
    means = {sdk: statistics.fmean(r["cpu_ms_per_inv"] for r in rs) for sdk, rs in rows.items()}
    for sdk, mean in means.items():
        print(f"{sdk:8} mean: {mean:.3f} ms SDK CPU per invocation")
    print(f"perdure/official SDK CPU per invocation: {means['perdure'] / means['official']:.2f}")
    return 1 if any(r["errors"] for rs in rows.values() for r in rs) else 0


if __name__ == "__main__":
    sys.exit(main())
