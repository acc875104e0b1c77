"""A Perdure server on PostgreSQL (a primary with a synchronous streaming standby, reached through
a two-host store URL) under a kill-storm load of official-SDK services while the database, not
the server, fails:

- the committing backend is terminated right after its commit is sent (`pg_terminate_backend`
  of commits held waiting for the standby, whose WAL receiver is paused for a moment: committed)
  or before it committed (commits held at their fence by a transaction locking the lease rows):
  the server reconciles each from the lease row, so nothing is duplicated or lost;
- the primary is SIGKILLed (postmaster and backends, as a crashed host) and the standby
  promoted: the server reconnects, renews its leases on the new primary, and loses nothing it
  acknowledged. The time from the promotion to the first successful call is printed.

The checks are the kill storm's (perdure/testing/killstorm.py): every request answered 200, each
journaled step's value used downstream exactly once, counters equal to their acknowledged
increments, no invocation left unfinished, no key locked), plus: every journal's indexes are
0..n-1 in the database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from perdure.testing.killstorm import SERVICE_MODULE, Disruptor, StormConfig, StormReport, storm
from tests.compat.services.ledger import LEDGER_ENV
from tests.pg.test_commit_outcome import backends
from tests.support import PerdureServer, PythonService, register
from tests.support.pg_replica import ReplicatedPostgres
from tests.support.postgres import postgres_available

pytestmark = [
    pytest.mark.skipif(not postgres_available(), reason="PostgreSQL 15 is not installed"),
    pytest.mark.timeout(240),
]

INVOCATIONS = 160
CUTS = 8
BACK_BOUND_S = 30.0  # generous: a hang guard on a shared 2-core machine, not a speed claim


@pytest.fixture
def fresh_pair() -> Iterator[ReplicatedPostgres]:
    replicated = ReplicatedPostgres()
    replicated.start()
    yield replicated
    replicated.stop()


def journal_gaps(dsn: str) -> list[tuple[str, list[int]]]:
    """Invocations whose journal indexes are not exactly 0..n-1."""
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT encode(id, 'hex'), array_agg(idx ORDER BY idx) FROM journal GROUP BY partition, id "
            "HAVING min(idx) <> 0 OR max(idx) + 1 <> count(*)"
        ).fetchall()
    return [(r[0], list(r[1])) for r in rows]


def journals(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(DISTINCT id) FROM journal").fetchone()
    return int(row[0]) if row else 0


async def run(
    tmp_path: Path, dsn: str, config: StormConfig, disruptor: Callable[[PerdureServer], Disruptor]
) -> tuple[StormReport, str]:
    """The storm against a server on `dsn`; `disruptor(server)` fails the database meanwhile."""
    ledger = tmp_path / "ledger.txt"
    server = PerdureServer(tmp_path / "data", store=dsn)
    service = PythonService(
        SERVICE_MODULE, "app", env={LEDGER_ENV: str(ledger)}, log_dir=tmp_path, name="storm"
    )
    with server, service:
        register(server.admin_url, service.url)
        report = await storm(server, ledger, config, disruptor(server))
    print(report.summary())
    return report, server.log_path.read_text(errors="replace")


async def test_commits_cut_off_after_they_were_sent_are_neither_lost_nor_duplicated(
    pair: ReplicatedPostgres, tmp_path: Path
) -> None:
    seed = int(os.environ.get("KILLSTORM_SEED", random.randrange(2**32)))
    print(f"seed {seed} (replay with KILLSTORM_SEED={seed})")
    dsn = pair.create_database("cut")
    rng = random.Random(seed)
    walreceiver = pair.walreceiver_pid()

    async def cut_after_commit() -> int:
        # Hold the standby's acknowledgements back: commits sent now wait in SyncRep, already
        # committed on the primary. Then terminate their backends.
        os.kill(walreceiver, signal.SIGSTOP)
        try:
            await asyncio.sleep(0.3)
            return terminate(backends(pair, "SELECT perdure_commit", "SyncRep"))
        finally:
            os.kill(walreceiver, signal.SIGCONT)

    async def cut_before_commit() -> int:
        # Hold every lease row: commits sent now wait at their fence, not committed. Terminate them.
        with psycopg.connect(dsn) as holder:
            holder.execute("SELECT 1 FROM partition_lease FOR UPDATE")
            await asyncio.sleep(0.3)
            return terminate(backends(pair, "SELECT perdure_commit", "Lock", "wait_event_type"))

    def terminate(pids: list[int]) -> int:
        for pid in pids:
            pair.primary.psql(f"SELECT pg_terminate_backend({pid})")
        return len(pids)

    async def cut_commits(report: StormReport, clients_done: asyncio.Event) -> None:
        await asyncio.sleep(1.0)
        turn = 0
        while report.kills < CUTS and not clients_done.is_set():
            report.kills += await (cut_after_commit() if turn % 2 == 0 else cut_before_commit())
            turn += 1
            await asyncio.sleep(rng.uniform(0.3, 1.0))

    config = StormConfig(seed=seed, invocations=INVOCATIONS, kills=CUTS, deadline_s=150.0)
    report, log = await run(tmp_path, dsn, config, lambda _server: cut_commits)
    committed = len(re.findall(r"batch \d+ committed", log))
    failed = len(re.findall(r"batch \d+ did not commit", log))
    print(f"{report.kills} commits cut off; reconciled: {committed} committed, {failed} failed")
    assert report.ok, report.summary()
    assert report.kills >= 1, "no commit was ever cut off"
    assert committed >= 1, "no cut-off commit was reconciled as committed"
    assert failed >= 1, "no cut-off commit was reconciled as not committed"
    assert journal_gaps(dsn) == []


async def test_the_primary_killed_and_the_standby_promoted_loses_nothing_acknowledged(
    fresh_pair: ReplicatedPostgres, tmp_path: Path
) -> None:
    pair = fresh_pair
    seed = int(os.environ.get("KILLSTORM_SEED", random.randrange(2**32)))
    print(f"seed {seed} (replay with KILLSTORM_SEED={seed})")
    dsn = pair.create_database("failover")
    measured: dict[str, float] = {}

    def fail_over(server: PerdureServer) -> Disruptor:
        async def disrupt(report: StormReport, clients_done: asyncio.Event) -> None:
            await asyncio.sleep(3.0)
            pair.kill_primary()
            report.kills += 1
            await asyncio.sleep(1.0)  # a failover manager takes at least this long to decide
            await asyncio.to_thread(pair.promote)
            promoted = time.monotonic()
            async with httpx.AsyncClient(base_url=server.ingress_url, timeout=5.0) as http:
                while time.monotonic() - promoted < BACK_BOUND_S:
                    with contextlib.suppress(httpx.HTTPError):
                        if (await http.post("/Counter/probe/add", json=1)).status_code == 200:
                            measured["back_s"] = time.monotonic() - promoted
                            return
                    await asyncio.sleep(0.05)

        return disrupt

    config = StormConfig(seed=seed, invocations=INVOCATIONS, kills=4, deadline_s=150.0)
    report, _ = await run(tmp_path, dsn, config, fail_over)
    print(f"service back {measured.get('back_s')} s after the promotion")
    assert report.ok, report.summary()
    assert "back_s" in measured, f"no successful call within {BACK_BOUND_S} s of the promotion"
    assert journal_gaps(dsn) == []
    assert journals(dsn) > 0
