"""SQL introspection engines on 100,000 stored invocations: sqlglot translation onto the SQLite
views (what Perdure uses) against Apache DataFusion's Python package reading Arrow snapshots of
the same views (the alternative the issue asked to measure).

    python -m bench.query_dialect [--invocations 100000] [--data DIR]

The store is filled by the real processor (half Greeter calls running, half Counter calls over 500
keys, so most of those wait in the inbox). Each engine runs in its own process (clean peak RSS) and
answers the queries the `restate` CLI sends for `services status`, `invocations list` and
`invocations describe`, each several times; the median latency and the peak RSS are printed."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from perdure.server.processor.commands import Invoke, InvokeRequest
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor
from perdure.server.storage.sqlite import SqliteStorage
from tests.unit.schema_fixture import SCHEMA

BATCH = 2_000
KEYS = 500
REPEATS = 5
NOW_MS = 1_795_000_000_000

CLI_QUERIES = {
    "services status: pending": (
        "SELECT target_service_name, target_handler_name, 'pending' as status, COUNT(1) as num_invocations, "
        "MIN(created_at) as oldest_at, FIRST_VALUE(id ORDER BY created_at ASC) as oldest_invocation "
        "FROM sys_invocation_status WHERE status == 'inboxed' "
        "AND target_service_name IN ('Greeter','Counter') "
        "GROUP BY target_service_name, target_handler_name"
    ),
    "services status: active": (
        "SELECT target_service_name, target_handler_name, status, COUNT(1) as num_invocations, "
        "MIN(created_at) as oldest_at, FIRST_VALUE(id ORDER BY created_at ASC) as oldest_invocation "
        "FROM sys_invocation WHERE target_service_name IN ('Greeter','Counter') "
        "GROUP BY target_service_name, target_handler_name, status ORDER BY target_handler_name"
    ),
    "services status: inbox by key": (
        "SELECT service_name, service_key, COUNT(1) as num_pending FROM sys_inbox "
        "WHERE service_name IN ('Counter') GROUP BY service_name, service_key ORDER BY num_pending DESC"
    ),
    "invocations list: count": (
        "SELECT COUNT(1) AS n FROM (SELECT * FROM sys_invocation inv LIMIT 50000) WHERE status != 'completed'"
    ),
    "invocations list: ids": (
        "SELECT id FROM sys_invocation inv WHERE status != 'completed' ORDER BY inv.created_at DESC, inv.id "
        "LIMIT 100"
    ),
    "invocations describe": "SELECT * FROM sys_invocation WHERE id = '{some_id}'",
}


async def fill(data_dir: Path, n: int) -> None:
    storage = SqliteStorage(data_dir)
    await storage.open()
    processor = Processor(storage, SCHEMA)
    processor.recover(storage, NOW_MS)
    tokens = itertools.count(1)
    now = NOW_MS
    for start in range(0, n, BATCH):
        for i in range(start, min(n, start + BATCH)):
            if i % 2 == 0:
                target = Target("Greeter", "greet", None, "service", None)
            else:
                target = Target("Counter", "add", f"k{i % KEYS}", "virtual_object", "exclusive")
            request = InvokeRequest(target, orjson.dumps(i), headers=(("content-type", "application/json"),))
            processor.apply(Invoke(request, next(tokens), "send"), now)
        now += 1
        batch, _ = processor.take()
        await storage.commit_batch(batch)
        processor.committed()
    await storage.close()


def _some_id(db: Path) -> str:
    import sqlite3

    from perdure.server.query.functions import invocation_id_text

    conn = sqlite3.connect(db)
    raw = conn.execute("SELECT id FROM invocation ORDER BY created_at DESC LIMIT 1").fetchone()[0]
    conn.close()
    return invocation_id_text(bytes(raw))


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_sqlglot(db: Path, queries: dict[str, str]) -> dict[str, object]:
    from perdure.server.query.engine import QueryEngine, QueryLimits

    engine = QueryEngine(db, limits=QueryLimits(time_limit_s=120.0, connections=1))
    await engine.open()
    base = _peak_rss_mib()
    out: dict[str, object] = {}
    for name, sql in queries.items():
        times = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            result = await engine.execute(sql)
            times.append(time.perf_counter() - t0)
        out[name] = {"median_ms": round(statistics.median(times) * 1000, 1), "rows": len(result.rows)}
    await engine.close()
    out["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    out["rss_growth_mib"] = round(_peak_rss_mib() - base, 1)
    return out


_TABLES_OF = {"sys_invocation_status", "sys_invocation", "sys_inbox"}


async def run_datafusion(db: Path, queries: dict[str, str]) -> dict[str, object]:
    """DataFusion over Arrow snapshots: a live answer needs a fresh snapshot of every table the
    query reads (the store is SQLite, which DataFusion cannot scan), so each run takes one."""
    import datafusion
    import pyarrow as pa

    from perdure.server.query.encode_arrow import to_arrow
    from perdure.server.query.engine import QueryEngine, QueryLimits

    engine = QueryEngine(db, limits=QueryLimits(time_limit_s=120.0, rows_max=10_000_000, connections=1))
    await engine.open()
    base = _peak_rss_mib()
    out: dict[str, object] = {}
    for name, sql in queries.items():
        times, query_only = [], []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            ctx = datafusion.SessionContext()
            for table in _TABLES_OF:
                if re.search(rf"\b{table}\b", sql):
                    snapshot = pa.ipc.open_stream(to_arrow(await engine.execute(f"SELECT * FROM {table}")))
                    ctx.register_record_batches(table, [snapshot.read_all().to_batches()])
            t1 = time.perf_counter()
            rows = ctx.sql(sql).to_arrow_table().num_rows
            t2 = time.perf_counter()
            times.append(t2 - t0)
            query_only.append(t2 - t1)
        out[name] = {
            "median_ms": round(statistics.median(times) * 1000, 1),
            "query_on_snapshot_ms": round(statistics.median(query_only) * 1000, 1),
            "rows": rows,
        }
    await engine.close()
    out["peak_rss_mib"] = round(_peak_rss_mib(), 1)
    out["rss_growth_mib"] = round(_peak_rss_mib() - base, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invocations", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=None, help="reuse (or create) the store here")
    parser.add_argument("--engine", choices=["sqlglot", "datafusion"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    data = args.data or Path(tempfile.mkdtemp(prefix="perdure-query-bench-"))
    db = data / "perdure.sqlite3"
    if args.engine:
        queries = {k: v.format(some_id=_some_id(db)) for k, v in CLI_QUERIES.items()}
        runner = run_sqlglot if args.engine == "sqlglot" else run_datafusion
        print(json.dumps(asyncio.run(runner(db, queries))))
        return
    if not db.exists():
        t0 = time.perf_counter()
        asyncio.run(fill(data, args.invocations))
        print(f"filled {args.invocations} invocations in {time.perf_counter() - t0:.1f} s ({data})")
    for engine in ("sqlglot", "datafusion"):
        argv = [sys.executable, "-m", "bench.query_dialect", "--data", str(data), "--engine", engine]
        result = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
        print(f"== {engine}")
        for name, figures in result.items():
            print(f"  {name}: {figures}")


if __name__ == "__main__":
    main()
