"""SQL introspection (`POST /query`) against each selected server (real Restate, Perdure).

A module scenario puts invocations in known states with the official Python SDK: one sleeping
after its first step, one stuck retrying a failing step (the request-response deployment runs
without its ledger, so every step fails), and a Counter key with state. The same queries run on
both servers and must show the same columns and the same facts.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa
import pytest

from perdure.server.query.tables import TABLES
from tests.compat.services.ledger import GATE_DIR_ENV, LABEL_ENV, LEDGER_ENV
from tests.support import PythonService, Server, query, register

CORE_MODULE = "tests.compat.services.core"
SLEEP_MS = 600_000
WAIT_S_MAX = 30.0
ARROW = "application/vnd.apache.arrow.stream"


@dataclass(frozen=True)
class Scenario:
    server: Server
    deployment_id: str  # the bidi deployment of the core services (with their ledger)
    broken_deployment_id: str  # the request-response deployment (no ledger: steps fail)
    sleeping: str  # Steps/sleepy, asleep for 10 minutes after step "one"
    stuck: str  # RrFlaky/run, retrying a step that always fails
    counter_key: str  # Counter key whose state is count = 5
    root: Path

    def send(self, target: str, body: Any) -> str:
        resp = httpx.post(f"{self.server.ingress_url}/{target}/send", json=body, timeout=30.0)
        assert resp.status_code == 202, resp.text
        invocation_id = resp.json()["invocationId"]
        assert isinstance(invocation_id, str)
        return invocation_id


def wait_for(what: str, probe: Callable[[], bool], timeout_s: float = WAIT_S_MAX) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def status_of(server: Server, invocation_id: str) -> dict[str, Any]:
    rows = query(server.admin_url, f"SELECT * FROM sys_invocation WHERE id = '{invocation_id}'")
    return rows[0] if rows else {}


def journal_of(server: Server, invocation_id: str) -> list[dict[str, Any]]:
    return query(
        server.admin_url,
        f"SELECT index, entry_type, name FROM sys_journal WHERE id = '{invocation_id}' ORDER BY index",
    )


def start_sleeping(scenario_server: Server, send: Callable[[str, Any], str]) -> str:
    """A Steps/sleepy invocation that has journaled its first step and sleeps for 10 minutes."""
    invocation_id = send("Steps/sleepy", {"tag": uuid.uuid4().hex[:12], "sleep_ms": SLEEP_MS})
    wait_for("the sleep entry", lambda: len(journal_of(scenario_server, invocation_id)) >= 4)
    return invocation_id


def start_stuck(server: Server, send: Callable[[str, Any], str]) -> str:
    """An RrFlaky/run invocation that has failed at least once and waits for its next retry."""
    invocation_id = send("RrFlaky/run", uuid.uuid4().hex[:12])
    wait_for("backing-off", lambda: status_of(server, invocation_id).get("status") == "backing-off")
    return invocation_id


@pytest.fixture(scope="module")
def scenario(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp(f"introspection-{server.kind}")
    (root / "gates").mkdir()
    env = {LEDGER_ENV: str(root / "ledger.txt"), GATE_DIR_ENV: str(root / "gates"), LABEL_ENV: "main"}
    with (
        PythonService(CORE_MODULE, "app", env=env, log_dir=root, name="core") as svc,
        PythonService(CORE_MODULE, "rr_app", log_dir=root, name="core-rr") as broken,
    ):
        deployment_id = register(server.admin_url, svc.url)
        broken_id = register(server.admin_url, broken.url)
        resp = httpx.post(f"{server.ingress_url}/Counter/c1/add", json=5, timeout=30.0)
        assert resp.status_code == 200, resp.text
        partial = Scenario(server, deployment_id, broken_id, "", "", "c1", root)
        sleeping = start_sleeping(server, partial.send)
        stuck = start_stuck(server, partial.send)
        yield Scenario(server, deployment_id, broken_id, sleeping, stuck, "c1", root)


def test_sleeping_invocation_shows_its_journal_while_it_sleeps(scenario: Scenario) -> None:
    rows = journal_of(scenario.server, scenario.sleeping)
    assert rows == [
        {"index": 0, "entry_type": "Command: Input", "name": ""},
        {"index": 1, "entry_type": "Command: Run", "name": "one"},
        {"index": 2, "entry_type": "Notification: Run"},
        {"index": 3, "entry_type": "Command: Sleep", "name": ""},
    ]
    status = status_of(scenario.server, scenario.sleeping)
    assert status["status"] in ("running", "suspended")
    assert status["target"] == "Steps/sleepy" and status["journal_size"] == 4


def test_stuck_invocation_is_backing_off_with_its_last_failure(scenario: Scenario) -> None:
    row = status_of(scenario.server, scenario.stuck)
    assert row["status"] == "backing-off"
    assert row["last_failure"].startswith("[500 Internal] KeyError('LEDGER_PATH')")
    assert row["last_failure_related_command_name"] == "flaky"
    assert row["last_failure_related_command_type"] == "Run"
    assert row["retry_count"] >= 1
    assert row["next_retry_at"].endswith("Z") and len(row["next_retry_at"]) == len("2026-11-25T07:58:57.831Z")


def test_state_values_are_hex_and_utf8(scenario: Scenario) -> None:
    rows = query(
        scenario.server.admin_url,
        "SELECT service_name, service_key, key, value_utf8, value, value_length FROM state "
        f"WHERE service_name = 'Counter' AND service_key = '{scenario.counter_key}'",
    )
    assert rows == [
        {
            "service_name": "Counter",
            "service_key": "c1",
            "key": "count",
            "value_utf8": "5",
            "value": "35",
            "value_length": 1,
        }
    ]


def test_registry_tables_list_services_and_deployments(scenario: Scenario) -> None:
    services = query(
        scenario.server.admin_url, "SELECT name, ty, deployment_id FROM sys_service ORDER BY name"
    )
    by_name = {s["name"]: s for s in services}
    assert by_name["Counter"] == {
        "name": "Counter",
        "ty": "virtual_object",
        "deployment_id": scenario.deployment_id,
    }
    assert by_name["RrFlaky"]["deployment_id"] == scenario.broken_deployment_id
    joined = query(
        scenario.server.admin_url,
        "SELECT inv.id, dp.id IS NOT NULL as pinned_deployment_exists FROM sys_invocation inv "
        "LEFT JOIN sys_deployment dp ON dp.id = inv.pinned_deployment_id "
        f"WHERE inv.id = '{scenario.stuck}'",
    )
    assert joined == [{"id": scenario.stuck, "pinned_deployment_exists": True}]


def arrow_table(server: Server, sql: str) -> pa.Table:
    resp = httpx.post(
        f"{server.admin_url}/query", json={"query": sql}, headers={"accept": "*/*"}, timeout=30.0
    )
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == ARROW
    return pa.ipc.open_stream(resp.content).read_all()


def restate_type(ty: pa.DataType) -> str:
    """Arrow type as Restate's information_schema spells it."""
    if pa.types.is_timestamp(ty):
        return 'Timestamp(ms, "+00:00")'
    if pa.types.is_duration(ty):
        return "Duration(ms)"
    if pa.types.is_list(ty):
        return f"List({restate_type(ty.value_type)})"
    names = {
        pa.large_string(): "LargeUtf8",
        pa.uint32(): "UInt32",
        pa.uint64(): "UInt64",
        pa.bool_(): "Boolean",
        pa.large_binary(): "LargeBinary",
    }
    return names.get(ty, str(ty))


@pytest.mark.parametrize("table", ["sys_invocation", "sys_journal", "state", "sys_service", "sys_deployment"])
def test_arrow_answers_have_restate_columns_and_types(scenario: Scenario, table: str) -> None:
    got = arrow_table(scenario.server, f"SELECT * FROM {table}")
    assert got.num_rows > 0
    assert [(f.name, restate_type(f.type)) for f in got.schema] == list(TABLES[table])


def test_information_schema_lists_every_table_column(scenario: Scenario) -> None:
    rows = query(
        scenario.server.admin_url,
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_name LIKE 'sys_%' OR table_name = 'state'",
    )
    got = {(r["table_name"], r["column_name"], r["data_type"]) for r in rows}
    expected = {(t, c, ty) for t, cols in TABLES.items() for c, ty in cols if not t.startswith("perdure_")}
    assert got == expected


def test_bad_sql_answers_an_error_with_a_message(scenario: Scenario) -> None:
    resp = httpx.post(
        f"{scenario.server.admin_url}/query",
        json={"query": "SELECT nope FROM state"},
        headers={"accept": "application/json"},
        timeout=30.0,
    )
    # Restate answers 500 for schema errors; Perdure answers 400 (the caller's fault).
    assert resp.status_code == (500 if scenario.server.kind == "restate" else 400)
    assert "nope" in resp.json()["message"]


def test_heavy_query_does_not_delay_invocations_beyond_its_time_limit(scenario: Scenario) -> None:
    if scenario.server.kind == "restate":
        pytest.skip("the query time limit is Perdure's")
    heavy = (
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 100000) "
        "SELECT count(*) FROM n a, n b"
    )
    answer: list[httpx.Response] = []

    def run_heavy() -> None:
        answer.append(httpx.post(f"{scenario.server.admin_url}/query", json={"query": heavy}, timeout=60.0))

    thread = threading.Thread(target=run_heavy)
    started = time.monotonic()
    thread.start()
    try:
        latencies = []
        while thread.is_alive() and time.monotonic() - started < 30.0:
            t0 = time.monotonic()
            resp = httpx.post(f"{scenario.server.ingress_url}/Greeter/greet", json="Q", timeout=30.0)
            latencies.append(time.monotonic() - t0)
            assert resp.status_code == 200
    finally:
        thread.join(timeout=60.0)
    elapsed = time.monotonic() - started
    assert answer and answer[0].status_code == 400
    assert "time limit" in answer[0].json()["message"]
    assert elapsed < 15.0  # the default limit is 10 s
    assert len(latencies) >= 5 and max(latencies) < 1.0
