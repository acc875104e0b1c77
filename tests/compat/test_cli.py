"""The official `restate` CLI 1.7.12 and Perdure's own `perdure` CLI, run as processes against each
selected server (real Restate, Perdure), over the introspection scenario (a sleeping invocation,
a stuck one, a Counter with state). Each command's output must show the facts of the scenario.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.test_introspection import (
    Scenario,
    scenario,
    start_sleeping,
    start_stuck,
    status_of,
    wait_for,
)
from tests.support import PythonService, Server, query
from tests.support.cli import restate_cli
from tests.support.paths import perdure_executable

__all__ = ["scenario"]  # the module fixture, shared with test_introspection

CLI_TIMEOUT_S = 60.0
VERSIONED_MODULE = "tests.compat.services.versioned"


restate = restate_cli


def perdure(
    server: Server | None, *args: str, admin_url: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`perdure ...` with PERDURE_ADMIN_URL pointed at `server` (or `admin_url`)."""
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    env["PERDURE_ADMIN_URL"] = admin_url or (server.admin_url if server else "")
    return subprocess.run(
        [str(perdure_executable()), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def json_out(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc))


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official CLI's config home: empty, so only RESTATE_ADMIN_URL counts."""
    return tmp_path_factory.mktemp("restate-cli-home")


# ---------------------------------------------------------------- the official CLI


def test_restate_deployments_list_and_describe(scenario: Scenario, home: Path) -> None:
    listing = ok(restate(scenario.server, home, "deployments", "list"))
    assert scenario.deployment_id in listing and scenario.broken_deployment_id in listing
    assert "Counter [" in listing and "RrFlaky [" in listing
    described = ok(restate(scenario.server, home, "deployments", "describe", scenario.deployment_id))
    assert scenario.deployment_id in described and "Counter" in described and "Steps" in described


def test_restate_services_list_and_describe(scenario: Scenario, home: Path) -> None:
    listing = ok(restate(scenario.server, home, "services", "list"))
    for name in ("Greeter", "Counter", "Steps", "RrFlaky"):
        assert name in listing
    assert "virtual object" in listing
    described = ok(restate(scenario.server, home, "services", "describe", "Counter"))
    assert "VirtualObject" in described and scenario.deployment_id in described
    assert "add" in described and "get" in described


def test_restate_invocations_list_shows_sleeping_and_stuck(scenario: Scenario, home: Path) -> None:
    listing = ok(restate(scenario.server, home, "invocations", "list"))
    assert scenario.sleeping in listing and scenario.stuck in listing
    assert "Steps/sleepy" in listing and "RrFlaky/run" in listing
    assert "backing-off" in listing and "KeyError('LEDGER_PATH')" in listing


@pytest.mark.parametrize(
    "args, shown, hidden",
    [
        (["--service", "Steps"], "sleeping", "stuck"),
        (["--handler", "run"], "stuck", "sleeping"),
        (["--status", "backing-off"], "stuck", "sleeping"),
    ],
)
def test_restate_invocations_list_filters(
    scenario: Scenario, home: Path, args: list[str], shown: str, hidden: str
) -> None:
    listing = ok(restate(scenario.server, home, "invocations", "list", *args))
    assert getattr(scenario, shown) in listing and getattr(scenario, hidden) not in listing


def test_restate_invocations_list_by_deployment(scenario: Scenario, home: Path) -> None:
    listing = ok(
        restate(scenario.server, home, "invocations", "list", "--deployment", scenario.deployment_id)
    )
    assert scenario.sleeping in listing and scenario.stuck not in listing


def test_restate_invocations_describe_shows_the_journal(scenario: Scenario, home: Path) -> None:
    sleeping = ok(restate(scenario.server, home, "invocations", "describe", scenario.sleeping))
    assert "Steps/sleepy" in sleeping
    assert "Command: Run [one]" in sleeping and "Command: Sleep" in sleeping
    stuck = ok(restate(scenario.server, home, "invocations", "describe", scenario.stuck))
    assert "backing-off" in stuck and "KeyError('LEDGER_PATH')" in stuck


def test_restate_sql_prints_rows(scenario: Scenario, home: Path) -> None:
    sql = f"SELECT id, status FROM sys_invocation WHERE id = '{scenario.stuck}'"
    for _ in range(40):  # the stuck invocation is briefly `running` during each retry
        out = ok(restate(scenario.server, home, "sql", sql))
        if "backing-off" in out:
            break
        time.sleep(0.25)
    assert scenario.stuck in out and "backing-off" in out
    journal = ok(
        restate(
            scenario.server,
            home,
            "sql",
            f"SELECT index, entry_type, name FROM sys_journal WHERE id = '{scenario.sleeping}'",
        )
    )
    assert "Command: Sleep" in journal and "Notification: Run" in journal


def test_restate_state_get_prints_values(scenario: Scenario, home: Path) -> None:
    out = ok(restate(scenario.server, home, "state", "get", "Counter", scenario.counter_key))
    assert "count" in out and "5" in out


def test_restate_cancel_kill_purge(scenario: Scenario, home: Path) -> None:
    sleeping = start_sleeping(scenario.server, scenario.send)
    ok(restate(scenario.server, home, "invocations", "cancel", "--yes", sleeping))
    wait_for("cancellation", lambda: status_of(scenario.server, sleeping).get("status") == "completed")
    assert status_of(scenario.server, sleeping)["completion_failure"] == "[409] cancelled"

    stuck = start_stuck(scenario.server, scenario.send)
    ok(restate(scenario.server, home, "invocations", "kill", "--yes", stuck))
    wait_for("kill", lambda: status_of(scenario.server, stuck).get("status") == "completed")
    assert status_of(scenario.server, stuck)["completion_failure"] == "[409] killed"

    ok(restate(scenario.server, home, "invocations", "purge", "--yes", stuck))
    wait_for("purge", lambda: not status_of(scenario.server, stuck))


def test_restate_deployments_register_and_remove(scenario: Scenario, home: Path) -> None:
    with PythonService(VERSIONED_MODULE, "app", log_dir=scenario.root, name="versioned-restate-cli") as svc:
        ok(restate(scenario.server, home, "deployments", "register", "--yes", svc.url))
        rows = query(
            scenario.server.admin_url, "SELECT deployment_id FROM sys_service WHERE name = 'Versioned'"
        )
        assert len(rows) == 1
        deployment_id = rows[0]["deployment_id"]
        assert deployment_id in ok(restate(scenario.server, home, "deployments", "list"))
        ok(restate(scenario.server, home, "deployments", "remove", "--force", "--yes", deployment_id))
        assert deployment_id not in ok(restate(scenario.server, home, "deployments", "list"))


# ---------------------------------------------------------------- perdure's CLI


def test_perdure_services_and_deployments(scenario: Scenario) -> None:
    services = json_out(perdure(scenario.server, "services", "--json"))
    assert {s["name"]: s["ty"] for s in services}["Counter"] == "VirtualObject"
    table = ok(perdure(scenario.server, "services"))
    assert "Counter" in table and "VirtualObject" in table and "add, get" in table
    deployments = json_out(perdure(scenario.server, "deployments", "list", "--json"))
    assert scenario.deployment_id in {d["id"] for d in deployments}
    assert scenario.deployment_id in ok(perdure(scenario.server, "deployments", "list"))


def test_perdure_invocations_filter_by_status(scenario: Scenario) -> None:
    stuck = json_out(perdure(scenario.server, "invocations", "--status", "backing-off", "--json"))
    assert scenario.stuck in {r["id"] for r in stuck}
    assert all(r["status"] == "backing-off" for r in stuck)
    table = ok(perdure(scenario.server, "invocations"))
    assert scenario.stuck in table and scenario.sleeping in table
    bad = perdure(scenario.server, "invocations", "--status", "sleeping")
    assert bad.returncode == 2 and "unknown status sleeping" in bad.stderr


def test_perdure_invocation_shows_the_journal_timeline(scenario: Scenario) -> None:
    described = json_out(perdure(scenario.server, "invocation", scenario.sleeping, "--json"))
    assert described["invocation"]["target"] == "Steps/sleepy"
    assert [e["entry_type"] for e in described["journal"]] == [
        "Command: Input",
        "Command: Run",
        "Notification: Run",
        "Command: Sleep",
    ]
    timeline = ok(perdure(scenario.server, "invocation", scenario.stuck))
    assert "backing-off" in timeline and "KeyError('LEDGER_PATH')" in timeline and "Command: Run" in timeline


def test_perdure_sql_as_table_and_json(scenario: Scenario) -> None:
    sql = f"SELECT id, status FROM sys_invocation WHERE id = '{scenario.stuck}'"
    # The stuck invocation retries every 2 s: between attempts it is backing-off, briefly running.
    deadline = time.monotonic() + 30
    while (rows := json_out(perdure(scenario.server, "sql", sql, "--json")))[0]["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert rows == [{"id": scenario.stuck, "status": "backing-off"}]
    table = ok(perdure(scenario.server, "sql", sql))
    assert scenario.stuck in table and "backing-off" in table and "1 row" in table
    bad = perdure(scenario.server, "sql", "SELECT nope FROM state")
    assert bad.returncode == 1 and "nope" in bad.stderr


def test_perdure_state(scenario: Scenario) -> None:
    rows = json_out(perdure(scenario.server, "state", "Counter", scenario.counter_key, "--json"))
    assert rows == [{"key": "count", "value_utf8": "5", "value": "35"}]
    table = ok(perdure(scenario.server, "state", "Counter", scenario.counter_key))
    assert "count" in table and "5" in table


def test_perdure_cancel_kill_purge_and_exit_codes(scenario: Scenario) -> None:
    sleeping = start_sleeping(scenario.server, scenario.send)
    assert json_out(perdure(scenario.server, "cancel", sleeping, "--json"))["action"] == "cancel"
    wait_for("cancellation", lambda: status_of(scenario.server, sleeping).get("status") == "completed")

    stuck = start_stuck(scenario.server, scenario.send)
    early = perdure(scenario.server, "purge", stuck)
    assert early.returncode == 1 and "not yet completed" in early.stderr
    assert "Killed" in ok(perdure(scenario.server, "kill", stuck))
    wait_for("kill", lambda: status_of(scenario.server, stuck).get("status") == "completed")
    assert "Purged" in ok(perdure(scenario.server, "purge", stuck))
    wait_for("purge", lambda: not status_of(scenario.server, stuck))

    gone = perdure(scenario.server, "invocation", stuck)
    assert gone.returncode == 4
    malformed = perdure(scenario.server, "kill", "inv_nope")
    assert malformed.returncode == 2
    unreachable = perdure(None, "services", admin_url="http://127.0.0.1:9")
    assert unreachable.returncode == 3 and "cannot reach" in unreachable.stderr


def test_perdure_deployments_register(scenario: Scenario) -> None:
    with PythonService(VERSIONED_MODULE, "app", log_dir=scenario.root, name="versioned-perdure-cli") as svc:
        answer = json_out(perdure(scenario.server, "deployments", "register", svc.url, "--json"))
        assert [s["name"] for s in answer["services"]] == ["Versioned"]
        listing = ok(perdure(scenario.server, "deployments", "list"))
        assert answer["id"] in listing and "Versioned" in listing


EDITOR_SCRIPT = """#!{python}
import json, sys
path = sys.argv[1]
state = json.load(open(path))
state["count"] = 42
json.dump(state, open(path, "w"))
"""


def test_restate_state_edit_replaces_the_state_of_a_key(
    scenario: Scenario, home: Path, request: pytest.FixtureRequest
) -> None:
    editor = scenario.root / "editor.py"
    editor.write_text(EDITOR_SCRIPT.format(python=sys.executable))
    editor.chmod(0o755)
    key = f"edit-{uuid.uuid4().hex[:8]}"
    resp = httpx.post(f"{scenario.server.ingress_url}/Counter/{key}/add", json=5, timeout=30.0)
    assert resp.status_code == 200
    env_editor = {"RESTATE_EDITOR": str(editor)}
    out = ok(restate(scenario.server, home, "state", "edit", "Counter", key, "--yes", extra_env=env_editor))
    assert "Successfully submitted state update" in out
    wait_for(
        "the new state", lambda: httpx.get(f"{scenario.server.ingress_url}/Counter/{key}/get").text == "42"
    )
