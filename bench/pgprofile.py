"""Where one Perdure node on PostgreSQL spends its round trips and PostgreSQL's time.

    .venv/bin/python -m bench.pgprofile --n 2000 -c 32 [--py-spy out.txt]

A private PostgreSQL 15 cluster with `pg_stat_statements` preloaded (otherwise the same settings
as the tests': fsync and synchronous_commit on), one `perdure server --store` on a fresh database,
the official-SDK Greeter, `bench/load.py`. After the warm-up the statistics are reset; after the
measured phase the table lists every statement the server ran: calls per invocation (a call is a
round trip), PostgreSQL's execution time per invocation, rows and WAL bytes (`wal_bytes` of
pg_stat_statements, so per statement), followed by the totals (commits, WAL, CPU of PostgreSQL's
processes and of the server). With `--py-spy FILE` the server is sampled during the measured phase
(`py-spy record --format raw`, collapsed stacks: feed them to a flame graph tool or grep them)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.pgstat import DbProbe
from bench.procstat import tree_cpu_s
from tests.support import PythonService, register
from tests.support.paths import REPO_ROOT
from tests.support.postgres import PostgresCluster
from tests.support.servers import PerdureServer

STATEMENTS_SQL = (
    "SELECT calls, round(total_exec_time::numeric, 1), rows, wal_bytes, "
    "regexp_replace(left(query, 90), '\\s+', ' ', 'g') FROM pg_stat_statements "
    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "ORDER BY total_exec_time DESC LIMIT 25"
)


TABLES_SQL = (
    "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables "
    "WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname"
)


def _line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError("the load generator exited early")
    return line.strip()


def profile(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    pg = PostgresCluster(
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
        "-c pg_stat_statements.track_utility=off"
    )
    pg.start()
    try:
        dsn = pg.create_database()
        database = dsn.rsplit("/", 1)[1]
        pg.psql("CREATE EXTENSION pg_stat_statements", database)
        server = PerdureServer(workdir / "server", store=dsn)
        sdk = PythonService("bench.greeter", "app", log_dir=workdir, name="greeter-pgprofile")
        with server, sdk:
            register(server.admin_url, sdk.url)
            db = DbProbe(pg, dsn)
            argv = [sys.executable, "-m", "bench.load", "--port", str(server.ingress_port)]
            argv += ["--n", str(args.n), "--concurrency", str(args.concurrency), "--warmup", str(args.warmup)]
            argv += ["--path", "/Greeter/greet", "--body", '"Sarah"']
            load = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT
            )
            if _line(load) != "ready":
                raise RuntimeError("the load generator did not report ready")
            db0 = db.read()
            pg.psql("SELECT pg_stat_statements_reset()", database)
            cpu0 = tree_cpu_s(server.pid)
            spy = None
            if args.py_spy:
                spy = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--format",
                        "raw",
                        "--rate",
                        "200",
                        "--nonblocking",
                        "--pid",
                        str(server.pid),
                        "--output",
                        args.py_spy,
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(1.0)
            assert load.stdin is not None
            load.stdin.write("go\n")
            load.stdin.flush()
            result = json.loads(_line(load))
            cpu = tree_cpu_s(server.pid) - cpu0
            if spy is not None:
                spy.send_signal(2)
                spy.wait(timeout=60)
            load.wait(timeout=600)
            db1 = db.read()
            statements = pg.psql(STATEMENTS_SQL, database)
            tables = pg.psql(TABLES_SQL, database)
    finally:
        pg.stop()
    done = max(1, int(result["ok"]))
    print(f"{'calls/inv':>9} {'ms/inv':>7} {'rows/inv':>8} {'WAL B/inv':>9}  statement")
    for line in statements.splitlines():
        calls, ms, rows, wal, query = line.split("|", 4)
        print(
            f"{int(calls) / done:9.3f} {float(ms) / done:7.3f} {int(rows) / done:8.3f} "
            f"{int(float(wal)) / done:9.0f}  {query}"
        )
    titles = ("inserts/inv", "updates/inv", "HOT/inv", "deletes/inv")
    print(f"{'table':16} " + " ".join(f"{t:>11}" for t in titles) + "  (whole run)")
    for line in tables.splitlines():
        name, *counts = line.split("|")
        print(f"{name:16} " + " ".join(f"{int(c) / done:11.3f}" for c in counts))
    summary = {
        "ok": done,
        "throughput_per_s": float(result["throughput_per_s"]),
        "p50_ms": float(result["p50_ms"]),
        "server_cpu_ms_per_inv": cpu * 1000 / done,
        "db_cpu_ms_per_inv": (db1.cpu_s - db0.cpu_s) * 1000 / done,
        "db_commits_per_inv": (db1.commits - db0.commits) / done,
        "db_wal_bytes_per_inv": (db1.wal_bytes - db0.wal_bytes) / done,
    }
    print(json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=2000, help="measured invocations")
    parser.add_argument("--concurrency", "-c", type=int, default=32, help="keep-alive connections")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up invocations")
    parser.add_argument("--py-spy", default="", help="sample the server with py-spy into this file")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="perdure-bench-pgprofile-") as tmp:
        profile(args, Path(tmp))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
