"""A schedule declared next to its handler with Perdure's SDK (`@perdure.schedule`), end to end:
the official CLI registers the deployment on both servers (the declaration is handler metadata,
which Restate keeps and ignores); on Perdure the schedule exists from the registration and ticks
once per second through a forced re-registration and a SIGKILL of the server, no tick missed or
doubled. The rules of declaring (changes, removal, pause kept, malformed ones):
tests/harness/test_declared_schedules.py."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.compat.services.declared import SCHEDULE, TAG
from tests.compat.test_cli import json_out, ok, perdure, restate
from tests.compat.test_schedules import DOWNTIME_S, tick_times, wait_until
from tests.compat.workspace import Workspace
from tests.support import PythonService, Server, query

DECLARED_MODULE = "tests.compat.services.declared"
TICKS_PER_PHASE = 3


@pytest.fixture(scope="module")
def service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "declared", DECLARED_MODULE) as svc:
        yield svc


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("restate-cli-home")


def test_the_official_cli_registers_a_deployment_that_declares_a_schedule(
    server: Server, service: PythonService, home: Path
) -> None:
    ok(restate(server, home, "deployments", "register", "--yes", service.url))
    handler = httpx.get(f"{server.admin_url}/services/Declared/handlers/tick", timeout=10).json()
    declaration = handler["metadata"][f"perdure.schedule.{SCHEDULE}"]
    assert '"every":"1s"' in declaration
    assert "tick" in ok(restate(server, home, "services", "describe", "Declared"))


async def test_the_declared_schedule_ticks_every_second_across_reregistration_and_sigkill(
    server: Server, service: PythonService, home: Path, workspace: Workspace
) -> None:
    if server.kind != "perdure":
        pytest.skip("schedules are Perdure's")
    (row,) = query(
        server.admin_url, f"SELECT target, declared_by FROM perdure_schedules WHERE name = '{SCHEDULE}'"
    )
    assert row == {"target": "Declared/tick", "declared_by": "Declared"}
    await wait_until(lambda: len(tick_times(server, SCHEDULE)) >= TICKS_PER_PHASE)
    ok(restate(server, home, "deployments", "register", "--yes", "--force", service.url))
    count = len(tick_times(server, SCHEDULE))
    await wait_until(lambda: len(tick_times(server, SCHEDULE)) >= count + TICKS_PER_PHASE)
    server.kill()
    time.sleep(DOWNTIME_S)
    server.restart()
    count = len(tick_times(server, SCHEDULE))
    await wait_until(lambda: len(tick_times(server, SCHEDULE)) >= count + TICKS_PER_PHASE)
    assert json_out(perdure(server, "schedules", "pause", SCHEDULE, "--json"))["paused"] is True
    ticks = tick_times(server, SCHEDULE)
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), "one invocation per tick, none missed"
    (row,) = query(
        server.admin_url, f"SELECT fired, skipped FROM perdure_schedules WHERE name = '{SCHEDULE}'"
    )
    assert (row["fired"], row["skipped"]) == (len(ticks), 0)
    await wait_until(lambda: workspace.ledger.count(TAG, "tick") >= len(ticks))
