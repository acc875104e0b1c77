"""Perdure's retention cleanup: the sweeper drops journals whose journal retention is over
(keeping the output), then whole invocations once their idempotency retention is over, in
bounded batches, and SQLite gives the freed pages back (incremental vacuum)."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx

from tests.support import Ingress, PythonService, make_server, query, register

INVOCATIONS = 60
DEADLINE_S = 60.0


def _wait_for(what: str, check: object) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for: {what}"
        time.sleep(0.2)


def _sqlite(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def test_cleanup_drops_journals_then_invocations_and_reclaims_pages(tmp_path: Path) -> None:
    env = {"PERDURE_CLEANUP_INTERVAL_MS": "200", "PERDURE_CLEANUP_BATCH_MAX": "7"}
    with (
        make_server("perdure", tmp_path / "data", env=env) as server,
        PythonService("tests.compat.services.core", "app", log_dir=tmp_path) as svc,
    ):
        register(server.admin_url, svc.url)
        patch = httpx.patch(
            f"{server.admin_url}/services/Greeter", json={"journal_retention": "1s"}, timeout=10
        )
        assert patch.status_code == 200, patch.text

        async def calls() -> list[str]:
            async with Ingress(server.ingress_url) as ing:
                resps = await asyncio.gather(
                    *(ing.call("Greeter/greet", f"n{i}") for i in range(INVOCATIONS))
                )
            return [r.headers["x-restate-id"] for r in resps]

        ids = asyncio.run(calls())
        listed = ", ".join(f"'{i}'" for i in ids)

        def journals() -> int:
            return len(query(server.admin_url, f"SELECT id FROM sys_journal WHERE id IN ({listed})"))

        def completed() -> int:
            sql = f"SELECT id FROM sys_invocation WHERE id IN ({listed}) AND status = 'completed'"
            return len(query(server.admin_url, sql))

        _wait_for("journals dropped after their 1 s retention", lambda: journals() == 0)
        assert completed() == INVOCATIONS  # the outputs are still there
        out = httpx.get(f"{server.ingress_url}/restate/invocation/{ids[0]}/output", timeout=10)
        assert out.status_code == 200 and out.json() == "Hello, n0!"

        patch = httpx.patch(
            f"{server.admin_url}/services/Greeter", json={"idempotency_retention": "1s"}, timeout=10
        )
        assert patch.status_code == 200, patch.text
        more = asyncio.run(calls())
        listed = ", ".join(f"'{i}'" for i in more)
        _wait_for("invocations purged after their 1 s retention", lambda: completed() == 0)
        db = server.data_dir / "perdure.sqlite3"
        assert _sqlite(db, "PRAGMA auto_vacuum") == 2  # incremental
        _wait_for("free pages returned", lambda: _sqlite(db, "PRAGMA freelist_count") == 0)
        # The server still serves after the cleanup.
        resp = httpx.post(f"{server.ingress_url}/Greeter/greet", json="after", timeout=30)
        assert resp.status_code == 200 and resp.json() == "Hello, after!"
