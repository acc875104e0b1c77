"""Schedules on a real Perdure server (issue 15; Restate has none): the admin API, the
`perdure schedules` CLI, and a schedule ticking every second that survives a SIGKILL of the
server without missing or doubling a tick (the missed ticks catch up within the limit).
Overlap policies, catch-up limits, pause/resume and time zones: tests/harness/test_schedules.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.compat.test_cli import json_out, perdure
from tests.compat.workspace import Workspace, new_tag
from tests.support import PythonService, Server, query, register

LIMITED_MODULE = "tests.compat.services.limited"
ADMIN_TIMEOUT_S = 10.0
DOWNTIME_S = 2.5  # how long the server stays down: a few ticks are missed (catch-up allows 60: a
# restart on a loaded machine takes seconds more)
TICKS_AFTER_RESTART = 4


@pytest.fixture(scope="module")
def service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    if server.kind != "perdure":
        pytest.skip("schedules are Perdure's")
    with workspace.python_service("app", "limited", LIMITED_MODULE) as svc:
        register(server.admin_url, svc.url)
        yield svc


def admin(server: Server, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(method, f"{server.admin_url}{path}", json=body, timeout=ADMIN_TIMEOUT_S)


def tick_times(server: Server, name: str) -> list[int]:
    rows = query(
        server.admin_url,
        f"SELECT idempotency_key FROM sys_invocation WHERE idempotency_key LIKE 'schedule:{name}:%'",
    )
    return sorted(int(r["idempotency_key"].rsplit(":", 1)[1]) for r in rows)


async def wait_until(predicate: Any, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.1)


def test_schedules_admin_api_and_cli(server: Server, service: PythonService) -> None:
    spec = {
        "target": "Limited/tick",
        "body": {"tag": "x", "n": 0},
        "cron": "0 9 * * 1-5",
        "timezone": "Europe/Paris",
    }
    created = admin(server, "PUT", "/schedules/weekdays", spec)
    assert created.status_code == 201, created.text
    assert created.json()["overlap"] == "allow" and len(created.json()["next_runs_ms"]) == 5
    assert admin(server, "PUT", "/schedules/weekdays", spec).status_code == 200
    assert admin(server, "PUT", "/schedules/bad", {**spec, "cron": "nope"}).status_code == 422
    assert admin(server, "PUT", "/schedules/bad", {**spec, "target": "Nope/x"}).status_code == 404
    assert admin(server, "PUT", "/schedules/bad%20name", spec).status_code == 400
    listed = json_out(perdure(server, "schedules", "list", "--json"))
    assert [s["name"] for s in listed] == ["weekdays"]
    assert json_out(perdure(server, "schedules", "pause", "weekdays", "--json"))["paused"] is True
    assert json_out(perdure(server, "schedules", "resume", "weekdays", "--json"))["paused"] is False
    rows = query(server.admin_url, "SELECT name, target, timezone, next_run_at FROM perdure_schedules")
    assert rows[0]["name"] == "weekdays" and rows[0]["target"] == "Limited/tick" and rows[0]["next_run_at"]
    assert perdure(server, "schedules", "delete", "weekdays").returncode == 0
    assert admin(server, "GET", "/schedules/weekdays").status_code == 404


async def test_a_schedule_every_second_survives_sigkill_without_missing_or_doubling_ticks(
    server: Server, service: PythonService, workspace: Workspace
) -> None:
    name, tag = f"every-second-{new_tag()}", new_tag()
    spec = {"target": "Limited/tick", "body": {"tag": tag, "n": 0}, "every": "1s", "catch_up_max": 60}
    assert admin(server, "PUT", f"/schedules/{name}", spec).status_code == 201
    await wait_until(lambda: len(tick_times(server, name)) >= 3)
    server.kill()
    time.sleep(DOWNTIME_S)
    server.restart()
    before = len(tick_times(server, name))
    await wait_until(lambda: len(tick_times(server, name)) >= before + TICKS_AFTER_RESTART)
    assert admin(server, "PATCH", f"/schedules/{name}/pause").status_code == 200
    ticks = tick_times(server, name)
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), "one invocation per tick, none missed"
    (row,) = query(server.admin_url, f"SELECT fired, skipped FROM perdure_schedules WHERE name = '{name}'")
    assert (row["fired"], row["skipped"]) == (len(ticks), 0)
    await wait_until(lambda: workspace.ledger.count(tag, "tick 0") >= len(ticks))
