"""Benchmark runner: the official-SDK Greeter behind Perdure and the real Restate server.

Rounds alternate the servers (A B A B …). Each round starts a fresh server and SDK process,
registers the Greeter, warms up, then runs N invocations at concurrency C from a separate
load-generator process, and samples /proc for the server process tree's CPU time and peak RSS.
Run as `python -m bench.run` from the repository root (or `make bench`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from bench.pgstat import DbProbe, per_inv
from bench.procstat import tree_cpu_s, tree_peak_rss_bytes
from tests.support import PythonService, make_server, register
from tests.support.paths import REPO_ROOT, restate_installed
from tests.support.postgres import shared_cluster
from tests.support.process import ProcessFailedToStart

RESULTS_DIR = Path(__file__).parent / "results"
# Scenario -> (ingress path, request body): the three of issue 16, all served by bench/greeter.py.
SCENARIOS = {
    "greeter": ("/Greeter/greet", '"Sarah"'),
    "steps": ("/Steps/run", '"Sarah"'),
    "counter": ("/Counter/key-{c}/add", "1"),
}
LOAD_TIMEOUT_S = 600.0
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RoundResult:
    """What one round measured for one server."""

    server: str
    round: int
    ok: int
    errors: int
    first_error: str | None
    throughput_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_inv: float
    sdk_cpu_ms_per_inv: float
    server_peak_rss_mib: float
    db_cpu_ms_per_inv: float = 0.0  # perdure-pg: PostgreSQL's processes
    db_commits_per_inv: float = 0.0
    db_wal_bytes_per_inv: float = 0.0
    db_wal_fpi_per_inv: float = 0.0
    db_blks_read_per_inv: float = 0.0
    db_buffers_written_per_inv: float = 0.0
    scenario: str = "greeter"


def _read_line(stream: IO[str], what: str) -> str:
    line = stream.readline()
    if not line:
        raise RuntimeError(f"load generator exited before {what}")
    return line.strip()


def drive_load(
    ingress_port: int, args: argparse.Namespace, server_pid: int, sdk_pid: int, db: DbProbe | None = None
) -> RoundResult:
    argv = [sys.executable, "-m", "bench.load", "--port", str(ingress_port), "--n", str(args.n)]
    argv += ["--concurrency", str(args.concurrency), "--warmup", str(args.warmup)]
    path, body = SCENARIOS[getattr(args, "scenario", "greeter")]
    argv += ["--path", path, "--body", body]
    with subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
    ) as load:
        assert load.stdin is not None and load.stdout is not None
        if _read_line(load.stdout, "warm-up") != "ready":
            raise RuntimeError("load generator did not report ready")
        db0 = db.read() if db is not None else None
        server_cpu0, sdk_cpu0 = tree_cpu_s(server_pid), tree_cpu_s(sdk_pid)
        load.stdin.write("go\n")
        load.stdin.flush()
        summary = json.loads(_read_line(load.stdout, "results"))
        server_cpu_s = tree_cpu_s(server_pid) - server_cpu0
        sdk_cpu_s = tree_cpu_s(sdk_pid) - sdk_cpu0
        load.wait(timeout=LOAD_TIMEOUT_S)
    done = max(1, int(summary["ok"]))
    db_fields: dict[str, Any] = {}
    if db is not None and db0 is not None:
        db1 = db.read()
        db_fields = per_inv(db0, db1, done)
    return RoundResult(
        server="",
        round=0,
        ok=int(summary["ok"]),
        errors=int(summary["errors"]),
        first_error=summary["first_error"],
        throughput_per_s=float(summary["throughput_per_s"]),
        p50_ms=float(summary["p50_ms"]),
        p99_ms=float(summary["p99_ms"]),
        server_cpu_ms_per_inv=server_cpu_s * 1000.0 / done,
        sdk_cpu_ms_per_inv=sdk_cpu_s * 1000.0 / done,
        server_peak_rss_mib=tree_peak_rss_bytes(server_pid) / MIB,
        **db_fields,
    )


def add_sdk_args(parser: argparse.ArgumentParser) -> None:
    """`--sdk-args`: the SDK process's hypercorn arguments. Every bench that drives the official SDK
    takes the same default, uvloop: without it the SDK halves the throughput and the server's CPU per
    invocation rises with the longer waits, so figures of two benches would not compare."""
    parser.add_argument(
        "--sdk-args",
        default="--worker-class uvloop",
        type=lambda s: s.split(),
        help="extra hypercorn arguments for the SDK process",
    )


def run_round(kind: str, round_index: int, args: argparse.Namespace, workdir: Path) -> RoundResult:
    """Fresh server + fresh SDK process, register, warm up, measure, tear both down."""
    server = make_server(kind, workdir / f"{kind}-{round_index}")
    sdk = PythonService(
        "bench.greeter",
        "app",
        log_dir=workdir,
        name=f"greeter-{kind}-{round_index}",
        hypercorn_args=args.sdk_args,
    )
    with server, sdk:
        register(server.admin_url, sdk.url)
        store = getattr(server, "store", "")
        db = DbProbe(shared_cluster(), store) if store else None
        result = drive_load(server.ingress_port, args, server.pid, sdk.pid, db)
    fields = {"server": kind, "round": round_index, "scenario": args.scenario}
    return RoundResult(**{**asdict(result), **fields})


def summarize(results: list[RoundResult]) -> dict[str, dict[str, float]]:
    """Per server: mean over rounds of each metric (peak RSS: max)."""
    out: dict[str, dict[str, float]] = {}
    for kind in sorted({r.server for r in results}):
        rows = [r for r in results if r.server == kind]
        out[kind] = {
            "rounds": len(rows),
            "throughput_per_s": statistics.fmean(r.throughput_per_s for r in rows),
            "p50_ms": statistics.fmean(r.p50_ms for r in rows),
            "p99_ms": statistics.fmean(r.p99_ms for r in rows),
            "server_cpu_ms_per_inv": statistics.fmean(r.server_cpu_ms_per_inv for r in rows),
            "sdk_cpu_ms_per_inv": statistics.fmean(r.sdk_cpu_ms_per_inv for r in rows),
            "server_peak_rss_mib": max(r.server_peak_rss_mib for r in rows),
            "errors": sum(r.errors for r in rows),
            **{
                k: statistics.fmean(getattr(r, k) for r in rows)
                for k in ("db_cpu_ms_per_inv", "db_commits_per_inv", "db_wal_bytes_per_inv")
            },
        }
    return out


def ratios(
    summary: dict[str, dict[str, float]], ours: str = "perdure", theirs: str = "restate"
) -> dict[str, float]:
    """ours / theirs (Perdure / Restate by default) for every metric both servers have."""
    if ours not in summary or theirs not in summary:
        return {}
    a, b = summary[ours], summary[theirs]
    keys = ("throughput_per_s", "p50_ms", "p99_ms", "server_cpu_ms_per_inv", "server_peak_rss_mib")
    return {k: a[k] / b[k] for k in keys if b[k]}


COLUMNS = (
    ("inv/s", "throughput_per_s", "8.0f"),
    ("p50 ms", "p50_ms", "8.2f"),
    ("p99 ms", "p99_ms", "8.2f"),
    ("srv cpu ms/inv", "server_cpu_ms_per_inv", "15.3f"),
    ("sdk cpu ms/inv", "sdk_cpu_ms_per_inv", "15.3f"),
    ("srv peak MiB", "server_peak_rss_mib", "13.1f"),
    ("errors", "errors", "6.0f"),
    ("db cpu ms/inv", "db_cpu_ms_per_inv", "14.3f"),
    ("db commits/inv", "db_commits_per_inv", "15.3f"),
    ("db WAL B/inv", "db_wal_bytes_per_inv", "13.0f"),
)


def _row(server: str, label: str, values: dict[str, float]) -> str:
    cells = [f"{server:8} {label:>5}"]
    for title, key, fmt in COLUMNS:
        width = int(fmt.split(".")[0])
        cells.append(f"{values[key]:{fmt}}".rjust(max(width, len(title))))
    return " ".join(cells)


def _print_table(
    results: list[RoundResult], summary: dict[str, dict[str, float]], ratio: dict[str, float]
) -> None:
    titles = " ".join(title.rjust(int(fmt.split(".")[0])) for title, _, fmt in COLUMNS)
    print(f"{'server':8} {'round':>5} {titles}")
    for r in results:
        print(_row(r.server, str(r.round), {key: float(getattr(r, key)) for _, key, _ in COLUMNS}))
    for kind, values in summary.items():
        print(_row(kind, "mean", values))
    if ratio:
        print("perdure/restate: " + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items()))
    for ours, theirs in (("perdure-pg", "perdure"), ("perdure-pg", "restate")):
        extra = ratios(summary, ours, theirs)
        if extra:
            print(f"{ours}/{theirs}: " + ", ".join(f"{k} {v:.2f}" for k, v in extra.items()))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=3000, help="measured invocations per round")
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="concurrent connections")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per server (alternating)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up invocations per round")
    parser.add_argument("--servers", default="perdure,restate", help="comma list, order = alternation order")
    add_sdk_args(parser)
    parser.add_argument(
        "--scenario",
        default="greeter",
        help="greeter (one ctx.run), steps (three ctx.run), counter (virtual object state), "
        "a comma list, or all",
    )
    parser.add_argument("--out", type=Path, default=None, help="JSON output file (default bench/results/…)")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [s.strip() for s in args.scenario.split(",")]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}; choose from {', '.join(SCENARIOS)} or all")
    args.scenarios = names
    args.scenario = names[0]
    return args


def selected_kinds(raw: str) -> list[str]:
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    if "restate" in kinds and not restate_installed():
        print("restate-server not installed (make deps-node): benchmarking without it", file=sys.stderr)
        kinds.remove("restate")
    return kinds


def run_scenario(args: argparse.Namespace, kinds: list[str], tmp: Path) -> tuple[dict[str, object], bool]:
    """All rounds of one scenario (servers alternating); prints its table, returns its report."""
    tmp.mkdir(parents=True, exist_ok=True)
    results: list[RoundResult] = []
    failed: dict[str, str] = {}
    for round_index in range(args.rounds):
        for kind in kinds:
            if kind in failed:
                continue
            print(f"{args.scenario}: round {round_index} {kind} …", file=sys.stderr, flush=True)
            try:
                results.append(run_round(kind, round_index, args, tmp))
            except (ProcessFailedToStart, RuntimeError, OSError) as exc:
                failed[kind] = str(exc).splitlines()[0]
                print(f"{kind} failed: {exc}", file=sys.stderr)
    summary = summarize(results)
    ratio = ratios(summary)
    print(f"\n== scenario {args.scenario}: {SCENARIOS[args.scenario][0]}")
    _print_table(results, summary, ratio)
    report: dict[str, object] = {
        "rounds": [asdict(r) for r in results],
        "summary": summary,
        "ratios_perdure_over_restate": ratio,
        "ratios_perdure_pg_over_perdure": ratios(summary, "perdure-pg", "perdure"),
        "ratios_perdure_pg_over_restate": ratios(summary, "perdure-pg", "restate"),
        "failed": failed,
    }
    return report, bool(results) and not failed


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = selected_kinds(args.servers)
    reports: dict[str, dict[str, object]] = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix="perdure-bench-") as tmp:
        for name in args.scenarios:
            args.scenario = name
            reports[name], passed = run_scenario(args, kinds, Path(tmp) / name)
            ok = ok and passed
    out = args.out or RESULTS_DIR / f"bench-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    config = {k: v for k, v in vars(args).items() if k not in ("out", "scenario")}
    machine = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    report: dict[str, object] = {"config": config, "machine": machine}
    if len(reports) == 1:
        report.update(next(iter(reports.values())))
    report["scenarios"] = reports
    out.write_text(json.dumps(report, indent=2))
    print(f"results: {out}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
