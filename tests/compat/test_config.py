"""Restate's configuration: the same `restate.toml` and `RESTATE_*` variables given to the real
Restate server and to Perdure configure both alike (effective defaults shown by
`GET /services/{name}`, a fast retry policy in effect), and per-service and per-handler options
from the manifest override them. Private handlers are refused at the ingress as Restate does.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.workspace import Workspace, assert_ingress_error, new_tag
from tests.support import PythonService, Server, make_server, register, selected_servers
from tests.support.paths import restate_cli_binary

MODULE = "tests.compat.services.configured"
CALL_TIMEOUT_S = 30.0  # with Restate's default policy the 7 failures alone take over 60 s

RESTATE_TOML = """
# As in Restate's documentation: server-wide defaults every service starts from.
default-journal-retention = "2h"
default-idempotency-retention = "3h"
default-workflow-completion-retention = "4h"
cluster-name = "localcluster"          # a Restate key Perdure does not use: ignored, not fatal

[default-retry-policy]
max-attempts = 20
exponentiation-factor = 1.5
on-max-attempts = "kill"

[worker.invoker]
inactivity-timeout = "45s"
abort-timeout = "2m"

[worker.storage]
rocksdb-disable-wal-compression = false   # ignored by Perdure
"""
RESTATE_ENV = {
    "RESTATE_DEFAULT_RETRY_POLICY__INITIAL_INTERVAL": "50ms",
    "RESTATE_DEFAULT_RETRY_POLICY__MAX_INTERVAL": "500ms",
}
CONFIGURED_POLICY = {
    "initial_interval": "50ms",
    "exponentiation_factor": 1.5,
    "max_attempts": 20,
    "max_interval": "500ms",
    "on_max_attempts": "Kill",
}


@pytest.fixture(scope="module", params=selected_servers())
def configured(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"config-{request.param}")
    config_file = root / "restate.toml"
    config_file.write_text(RESTATE_TOML)
    with make_server(str(request.param), root / "data", config_file, RESTATE_ENV) as srv:
        yield srv


@pytest.fixture(scope="module")
def workspace(configured: Server, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace(tmp_path_factory.mktemp(f"config-ws-{configured.kind}"))
    ws.gates.mkdir()
    return ws


@pytest.fixture(scope="module")
def service(configured: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "main", module=MODULE) as svc:
        register(configured.admin_url, svc.url)
        yield svc


def _service(server: Server, name: str) -> dict[str, Any]:
    resp = httpx.get(f"{server.admin_url}/services/{name}", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def test_services_show_the_configured_defaults(configured: Server, service: PythonService) -> None:
    flaky = _service(configured, "ConfFlaky")
    assert flaky["retry_policy"] == CONFIGURED_POLICY
    assert (flaky["inactivity_timeout"], flaky["abort_timeout"]) == ("45s", "2m")
    assert (flaky["journal_retention"], flaky["idempotency_retention"]) == ("2h", "3h")
    assert "workflow_completion_retention" not in flaky
    signup = _service(configured, "ConfSignup")
    assert signup["workflow_completion_retention"] == "4h"
    assert signup["retry_policy"] == CONFIGURED_POLICY


def test_manifest_options_override_the_defaults_field_by_field(
    configured: Server, service: PythonService
) -> None:
    tuned = _service(configured, "ConfTuned")
    assert tuned["retry_policy"] == {**CONFIGURED_POLICY, "initial_interval": "100ms", "max_attempts": 5}
    assert (tuned["inactivity_timeout"], tuned["abort_timeout"], tuned["journal_retention"]) == (
        "30s",
        "2m",
        "5h",
    )
    handlers = {h["name"]: h for h in tuned["handlers"]}
    own = handlers["tuned_handler"]
    assert own["retry_policy"] == {"exponentiation_factor": 3.0, "max_attempts": 2}
    assert (own["abort_timeout"], own["idempotency_retention"]) == ("3m", "6h")
    assert handlers["relay"]["retry_policy"] == {"max_attempts": None}
    assert [h["public"] for h in (own, handlers["internal"])] == [True, False]
    assert _service(configured, "ConfHidden")["public"] is False


def test_failing_handler_completes_within_seconds_under_a_fast_policy(
    configured: Server, service: PythonService, workspace: Workspace
) -> None:
    tag = new_tag()
    resp = httpx.post(f"{configured.ingress_url}/ConfFlaky/run", json=tag, timeout=CALL_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "ok after 8"
    assert workspace.ledger.events(tag).count("attempt") == 8


def test_private_handler_and_service_are_refused_at_the_ingress(
    configured: Server, service: PythonService
) -> None:
    for path in ("ConfTuned/internal", "ConfHidden/hello"):
        resp = httpx.post(f"{configured.ingress_url}/{path}", json="x", timeout=10)
        assert_ingress_error(resp, 400, "the invoked service is not public")
    # Private means closed to the ingress only: a handler of the same server may call it.
    resp = httpx.post(f"{configured.ingress_url}/ConfTuned/relay", json="x", timeout=CALL_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "internal x"


def test_cli_config_view_shows_the_effective_options(
    configured: Server, service: PythonService, tmp_path: Path
) -> None:
    env = {**os.environ, "RESTATE_ADMIN_URL": configured.admin_url, "RESTATE_CLI_CONFIG_HOME": str(tmp_path)}
    env.update(NO_COLOR="1", COLUMNS="200")
    proc = subprocess.run(
        [str(restate_cli_binary()), "services", "config", "view", "ConfTuned"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for fact in ("30s", "2m", "5h", "3h"):
        assert fact in out, out
