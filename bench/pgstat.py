"""PostgreSQL's side of a benchmark round on `perdure-pg`: CPU of the cluster's processes
(postmaster and backends), commits of the server's database and WAL bytes written.

PostgreSQL 15 backends publish their statistics at most once a second while busy and within
10 s of going idle, so `read()` after a load waits for the counters to settle."""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from bench.procstat import tree_cpu_s
from tests.support.postgres import PostgresCluster

STATS_SETTLE_S = 11.0  # PGSTAT_IDLE_INTERVAL (10 s) and a margin


@dataclass(frozen=True, slots=True)
class DbSample:
    cpu_s: float
    commits: int
    wal_bytes: int
    wal_fpi: int = 0  # full-page images: a page's first change after a checkpoint
    blks_read: int = 0  # of the database: pages not in shared_buffers (the OS cache or the disk)
    buffers_written: int = 0  # pages written by checkpoints, the background writer and backends


def per_inv(before: DbSample, after: DbSample, done: int) -> dict[str, float]:
    """The change from `before` to `after`, per invocation, under RoundResult's field names."""
    return {
        "db_cpu_ms_per_inv": (after.cpu_s - before.cpu_s) * 1000.0 / done,
        "db_commits_per_inv": (after.commits - before.commits) / done,
        "db_wal_bytes_per_inv": (after.wal_bytes - before.wal_bytes) / done,
        "db_wal_fpi_per_inv": (after.wal_fpi - before.wal_fpi) / done,
        "db_blks_read_per_inv": (after.blks_read - before.blks_read) / done,
        "db_buffers_written_per_inv": (after.buffers_written - before.buffers_written) / done,
    }


class DbProbe:
    def __init__(self, cluster: PostgresCluster, dsn: str) -> None:
        self._cluster = cluster
        self._db = urlsplit(dsn).path.strip("/")
        self._pid = int((cluster.data / "postmaster.pid").read_text().split()[0])

    def read(self, settle: bool = True) -> DbSample:
        if settle:
            time.sleep(STATS_SETTLE_S)
        out = self._cluster.psql(
            f"SELECT xact_commit, blks_read FROM pg_stat_database WHERE datname = '{self._db}'; "
            "SELECT wal_bytes, wal_fpi FROM pg_stat_wal; "
            "SELECT buffers_checkpoint + buffers_clean + buffers_backend FROM pg_stat_bgwriter"
        )
        (commits, blks_read), (wal, fpi), (written,) = (line.split("|") for line in out.splitlines())
        return DbSample(
            tree_cpu_s(self._pid), int(commits), int(float(wal)), int(fpi), int(blks_read), int(written)
        )
