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


class DbProbe:
    def __init__(self, cluster: PostgresCluster, dsn: str) -> None:
        self._cluster = cluster
        self._db = urlsplit(dsn).path.strip("/")
        self._pid = int((cluster.data / "postmaster.pid").read_text().split()[0])

    def read(self, settle: bool = True) -> DbSample:
        if settle:
            time.sleep(STATS_SETTLE_S)
        out = self._cluster.psql(
            f"SELECT (SELECT xact_commit FROM pg_stat_database WHERE datname = '{self._db}'), "
            "(SELECT wal_bytes FROM pg_stat_wal)"
        )
        commits, wal = out.split("|")
        return DbSample(tree_cpu_s(self._pid), int(commits), int(float(wal)))
