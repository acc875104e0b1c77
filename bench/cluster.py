"""Perdure on PostgreSQL: 1 node against N nodes sharing one database (`--node-name`).

    .venv/bin/python -m bench.cluster --nodes 1,3 --n 3000 -c 32

For each node count: a fresh database of a private PostgreSQL 15 cluster, the nodes started
together (they split the 64 partitions at once), the official-SDK Greeter (bench/greeter.py)
registered on the first, and one load generator (bench/load.py) per node's ingress with its
share of the invocations and connections (a plain call stays on the node it reaches). Reported:
total throughput, p50/p99 (mean over generators), CPU ms per invocation of every node, of the
SDK and of PostgreSQL, and commits and WAL bytes per invocation. On 2 cores throughput cannot
grow with nodes; the point there is that the cost per invocation stays flat."""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.pgstat import DbProbe
from bench.procstat import tree_cpu_s
from tests.cluster.support import Cluster
from tests.support import PythonService, register

REPO_ROOT = Path(__file__).resolve().parent.parent


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("a load generator exited early")
    return line.strip()


def run(nodes: int, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    cluster = Cluster(workdir / f"nodes-{nodes}", nodes)
    sdk = PythonService("bench.greeter", "app", log_dir=workdir, name=f"greeter-{nodes}")
    try:
        cluster.start()
        with sdk:
            cluster.wait_balanced([f"n{i}" for i in range(nodes)])
            register(cluster.nodes[0].admin_url, sdk.url)
            time.sleep(2.5)  # every node reloads the registry within a renewal interval
            db = DbProbe(cluster.pg, cluster.dsn)
            loads = []
            for node in cluster.nodes:
                argv = [sys.executable, "-m", "bench.load", "--port", str(node.ingress_port)]
                argv += ["--n", str(args.n // nodes), "--concurrency", str(max(1, args.concurrency // nodes))]
                argv += [
                    "--warmup",
                    str(args.warmup // nodes),
                    "--path",
                    "/Greeter/greet",
                    "--body",
                    '"Sarah"',
                ]
                loads.append(
                    subprocess.Popen(
                        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
                    )
                )
            for load in loads:
                if _line(load) != "ready":
                    raise RuntimeError("load generator did not report ready")
            db0 = db.read()
            cpu0 = [tree_cpu_s(n.pid) for n in cluster.nodes]
            sdk0 = tree_cpu_s(sdk.pid)
            for load in loads:
                assert load.stdin is not None
                load.stdin.write("go\n")
                load.stdin.flush()
            results = [json.loads(_line(load)) for load in loads]
            cpu = [tree_cpu_s(n.pid) - c for n, c in zip(cluster.nodes, cpu0, strict=True)]
            sdk_cpu = tree_cpu_s(sdk.pid) - sdk0
            for load in loads:
                load.wait(timeout=600)
            db1 = db.read()
    finally:
        cluster.stop()
    done = max(1, sum(int(r["ok"]) for r in results))
    return {
        "nodes": nodes,
        "ok": done,
        "errors": sum(int(r["errors"]) for r in results),
        "throughput_per_s": sum(float(r["throughput_per_s"]) for r in results),
        "p50_ms": statistics.fmean(float(r["p50_ms"]) for r in results),
        "p99_ms": statistics.fmean(float(r["p99_ms"]) for r in results),
        "node_cpu_ms_per_inv": [round(c * 1000 / done, 3) for c in cpu],
        "nodes_cpu_ms_per_inv": sum(cpu) * 1000 / done,
        "sdk_cpu_ms_per_inv": sdk_cpu * 1000 / done,
        "db_cpu_ms_per_inv": (db1.cpu_s - db0.cpu_s) * 1000 / done,
        "db_commits_per_inv": (db1.commits - db0.commits) / done,
        "db_wal_bytes_per_inv": (db1.wal_bytes - db0.wal_bytes) / done,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", default="1,3", help="comma list of node counts")
    parser.add_argument("--n", type=int, default=3000, help="measured invocations per run (split over nodes)")
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="connections (split over nodes)")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up invocations (split over nodes)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perdure-bench-cluster-") as tmp:
        rows = [run(int(n), args, Path(tmp)) for n in args.nodes.split(",")]
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
