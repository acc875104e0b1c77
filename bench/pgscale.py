"""Cost per invocation with a large PostgreSQL store: bench.scale on `perdure server --store`.

    python -m bench.pgscale --stored 1000,100000,1000000 --n 3000 --rounds 2

A private PostgreSQL 15 cluster with PostgreSQL's default settings where they matter here
(shared_buffers 128 MB, checkpoint_timeout 5 min, max_wal_size 1 GB, full_page_writes on,
autovacuum on; fsync and synchronous_commit on, as everywhere in the tests). For each size: a
Perdure server runs a few hundred real idempotent Greeter calls into its own database (so the
completed rows and journals are the server's own), is stopped, and the database is grown to the
size by copying those rows under fresh random invocation ids in the server's partitions
(retention pushed a year out), then vacuumed and analyzed. Then the sizes are measured in
alternating rounds (A B C A B C), each on a fresh copy of its database (CREATE DATABASE ...
TEMPLATE, then a checkpoint) with a fresh server, under `bench.load`: throughput, p99, the
server's CPU per invocation, PostgreSQL's (the postmaster and all its processes: backends,
checkpointer, WAL writer, autovacuum), and PostgreSQL's counters per invocation: WAL bytes,
full-page images, blocks read into shared_buffers, buffers written. Each is the mean over rounds
and a ratio to the smallest store.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.pgstat import DbProbe
from bench.run import drive_load
from bench.scale import report, scale_arguments, seed
from tests.support import PythonService, register
from tests.support.postgres import PostgresCluster
from tests.support.servers import PerdureServer

CHUNK = 100_000  # invocations copied per transaction
YEAR_MS = 365 * 86_400_000
MIB = 1024 * 1024
KEYS = (
    "throughput_per_s",
    "p99_ms",
    "server_cpu_ms_per_inv",
    "db_cpu_ms_per_inv",
    "db_wal_bytes_per_inv",
    "db_wal_fpi_per_inv",
    "db_blks_read_per_inv",
    "db_buffers_written_per_inv",
    "db_mib",
)

# One chunk of fresh ids, each naming a completed seed invocation to copy (round robin). An id is
# 24 random bytes; its partition is what the server would compute from its first 8 bytes.
_MAP_SQL = """
CREATE TEMP TABLE copy_map ON COMMIT DROP AS
SELECT s.id AS old, n.id AS new, perdure_id_partition(n.id, %(bits)s::integer) AS partition
  FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) g
  JOIN seed s ON s.n = g %% %(seeds)s::bigint
 CROSS JOIN LATERAL (SELECT substring(decode(md5(random()::text || g::text)
                                             || md5(g::text || random()::text), 'hex') FROM 1 FOR 24)
                     AS id) n
"""
_COPY_INVOCATIONS_SQL = """
INSERT INTO invocation (partition, id, status, service, key, created_at, expires_at, record)
SELECT m.partition, m.new, i.status, i.service, i.key, i.created_at, %(far)s, i.record
  FROM copy_map m JOIN invocation i ON i.id = m.old ORDER BY m.partition, m.new
"""
_COPY_JOURNALS_SQL = """
INSERT INTO journal (partition, id, idx, type, body, appended_at, writer_epoch)
SELECT m.partition, m.new, j.idx, j.type, j.body, j.appended_at, j.writer_epoch
  FROM copy_map m JOIN journal j ON j.id = m.old ORDER BY m.partition, m.new, j.idx
"""


def grow(dsn: str, stored: int) -> None:
    """Copy the completed rows (invocation and journal: all a completed call leaves) under fresh
    ids until `stored` completed invocations exist; the server is stopped."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM timer").fetchone()
        if left is None or left[0]:
            raise RuntimeError("the seed left timers: its rows are not all a completed call leaves")
        partitions = conn.execute("SELECT value FROM cluster_meta WHERE key = 'partitions'").fetchone()
        assert partitions is not None
        bits = int(partitions[0]).bit_length() - 1
        conn.execute(
            "CREATE TEMP TABLE seed AS SELECT (row_number() OVER (ORDER BY id) - 1)::bigint AS n, id "
            "FROM invocation WHERE status = 'completed'"
        )
        row = conn.execute("SELECT count(*) FROM seed").fetchone()
        seeds = int(row[0]) if row else 0
        if not seeds:
            raise RuntimeError("the seed left no completed invocations to copy")
        far = int(time.time() * 1000) + YEAR_MS
        conn.execute("UPDATE invocation SET expires_at = %s WHERE status = 'completed'", (far,))
        need = max(0, stored - seeds)
        for lo in range(0, need, CHUNK):
            params = {"bits": bits, "lo": lo, "hi": min(need, lo + CHUNK) - 1, "seeds": seeds, "far": far}
            with conn.transaction():
                conn.execute(_MAP_SQL, params)
                conn.execute(_COPY_INVOCATIONS_SQL, params)
                conn.execute(_COPY_JOURNALS_SQL, params)
        conn.execute("VACUUM (ANALYZE)")
        conn.execute("CHECKPOINT")


def measure(
    pg: PostgresCluster, template: str, workdir: Path, args: argparse.Namespace, label: str
) -> dict[str, float]:
    name = f"round_{label}"
    pg.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}" STRATEGY FILE_COPY')
    pg.psql("CHECKPOINT")
    dsn = pg.dsn(name)
    server = PerdureServer(workdir / f"server-{label}", store=dsn)
    svc = PythonService(
        "bench.greeter",
        "app",
        log_dir=workdir,
        name=f"greeter-{label}",
        hypercorn_args=["--worker-class", "uvloop"],
    )
    try:
        with server, svc:
            register(server.admin_url, svc.url)  # the same endpoint again: a new deployment is fine
            r = drive_load(server.ingress_port, args, server.pid, svc.pid, DbProbe(pg, dsn))
        size = float(pg.psql(f"SELECT pg_database_size('{name}')"))
    finally:
        pg.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    out = {k: float(getattr(r, k)) for k in KEYS if k != "db_mib"}
    out["db_mib"] = size / MIB
    out["errors"] = float(r.errors)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = scale_arguments(__doc__)
    parser.add_argument(
        "--pg-options", default="-c shared_buffers=128MB", help="more `-c name=value` PostgreSQL settings"
    )
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.stored.split(",")]
    rounds: dict[int, list[dict[str, float]]] = {size: [] for size in sizes}
    grown: dict[int, float] = {}
    pg = PostgresCluster(args.pg_options)
    pg.start()
    try:
        with tempfile.TemporaryDirectory(prefix="perdure-pgscale-") as tmp_dir:
            work = Path(tmp_dir)
            templates: dict[int, str] = {}
            for size in sizes:
                dsn = pg.create_database(f"stored{size}")
                templates[size] = dsn.rsplit("/", 1)[1]
                print(f"{size} stored: seeding and growing …", file=sys.stderr, flush=True)
                seed(work / f"seed-{size}", work, store=dsn)
                t0 = time.monotonic()
                grow(dsn, size)
                grown[size] = time.monotonic() - t0
                print(f"{size} stored: grown in {grown[size]:.1f} s", file=sys.stderr, flush=True)
            # A B C A B C: each round measures a fresh copy, so no size inherits another round's rows.
            for i in range(args.rounds):
                for size in sizes:
                    print(
                        f"round {i}: {size} stored, load {os.getloadavg()[0]:.2f} …",
                        file=sys.stderr,
                        flush=True,
                    )
                    rounds[size].append(measure(pg, templates[size], work, args, f"{size}_{i}"))
    finally:
        pg.stop()
    report(args.n, KEYS, rounds, grown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
