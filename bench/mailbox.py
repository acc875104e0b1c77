"""A call between two nodes (through the partition mailbox) against a call inside one node.

    .venv/bin/python -m bench.mailbox --n 2000 -c 16

Three nodes on a fresh database of a private PostgreSQL 15 cluster; one load generator on n0's
ingress calls `Hop/relay`, a plain service (its invocation is in one of n0's partitions) that
calls `Echo/{key}/echo`, a shared object handler. `same-node`: the key's partition is n0's (the
call and its result stay in n0's processor). `cross-node`: the key's partition is n1's (the call
is an outbox row n0 commits, n1 applies, and the result another row back). Reported per mode:
throughput, p50/p99, CPU ms per invocation of the three nodes and of PostgreSQL, commits per
invocation."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cluster import REPO_ROOT, _line
from bench.pgstat import DbProbe
from bench.procstat import tree_cpu_s
from tests.cluster.support import Cluster, keys_by_owner, wait_services
from tests.support import PythonService, register


def measure(cluster: Cluster, db: DbProbe, key: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.load", "--port", str(cluster.nodes[0].ingress_port)]
    argv += ["--n", str(args.n), "--concurrency", str(args.concurrency), "--warmup", str(args.warmup)]
    argv += ["--path", "/Hop/relay", "--body", json.dumps(key)]
    load = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT)
    if _line(load) != "ready":
        raise RuntimeError("load generator did not report ready")
    db0, cpu0 = db.read(), [tree_cpu_s(n.pid) for n in cluster.nodes]
    assert load.stdin is not None
    load.stdin.write("go\n")
    load.stdin.flush()
    result = json.loads(_line(load))
    cpu = [tree_cpu_s(n.pid) - c for n, c in zip(cluster.nodes, cpu0, strict=True)]
    db1 = db.read()
    load.wait(timeout=600)
    done = max(1, int(result["ok"]))
    return {
        "ok": done,
        "errors": result["errors"],
        "throughput_per_s": round(float(result["throughput_per_s"]), 1),
        "p50_ms": round(float(result["p50_ms"]), 2),
        "p99_ms": round(float(result["p99_ms"]), 2),
        "nodes_cpu_ms_per_inv": round(sum(cpu) * 1000 / done, 3),
        "db_cpu_ms_per_inv": round((db1.cpu_s - db0.cpu_s) * 1000 / done, 3),
        "db_commits_per_inv": round((db1.commits - db0.commits) / done, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="measured invocations per mode")
    parser.add_argument("--concurrency", "-c", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=200)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="perdure-bench-mailbox-") as tmp:
        cluster = Cluster(Path(tmp), 3)
        try:
            cluster.start()
            with PythonService("bench.mailbox_service", "app", log_dir=Path(tmp)) as sdk:
                leases = cluster.wait_balanced(["n0", "n1", "n2"])
                register(cluster.nodes[0].admin_url, sdk.url)
                wait_services(cluster, "Echo")
                time.sleep(2.5)
                keys = keys_by_owner(leases, ["n0", "n1"], 1, "echo")
                db = DbProbe(cluster.pg, cluster.dsn)
                for mode, key in (("same-node", keys["n0"][0]), ("cross-node", keys["n1"][0])):
                    rows.append({"mode": mode, "key": key, **measure(cluster, db, key, args)})
        finally:
            cluster.stop()
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
