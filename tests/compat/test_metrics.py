"""Prometheus metrics on each selected server (real Restate: the node port; Perdure: the admin port),
scraped and parsed with prometheus_client's parser. Restate's core counters carry the same label
keys on both servers and move by the same amounts for the same requests; Perdure's own series
(per-handler outcomes and durations, inbox depth and oldest pending age, store commits) move as
the requests say."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.compat.services.core import ATTEMPTS_BEFORE_SUCCESS
from tests.compat.test_introspection import wait_for
from tests.compat.test_limits import delete_rules, put_rules
from tests.compat.workspace import Workspace
from tests.support import PythonService, RestateServer, Server, register

NODE_LABELS = {"cluster_name", "node_name"}
Sample = tuple[str, frozenset[tuple[str, str]], float]


@dataclass(frozen=True)
class Scrape:
    samples: list[Sample]

    def value(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        want = set(labels.items())
        return sum(v for n, ls, v in self.samples if n == name and want <= ls)

    def label_keys(self, name: str) -> set[frozenset[str]]:
        return {frozenset(k for k, _ in ls) for n, ls, _ in self.samples if n == name}


def metrics_url(server: Server) -> str:
    if isinstance(server, RestateServer):
        return f"http://127.0.0.1:{server.node_port}/metrics"
    return f"{server.admin_url}/metrics"


def scrape(server: Server) -> Scrape:
    resp = httpx.get(metrics_url(server), timeout=30.0)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    samples = [
        (s.name, frozenset(s.labels.items()), s.value)
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    ]
    return Scrape(samples)


@pytest.fixture(scope="module")
def services(server: Server, workspace: Workspace) -> Iterator[Server]:
    with (
        workspace.python_service("app", "metrics") as core,
        PythonService(
            "tests.compat.services.objects", "app", env=workspace.env("metrics"), log_dir=workspace.root
        ) as objects,
    ):
        register(server.admin_url, core.url)
        register(server.admin_url, objects.url)
        yield server


def call(server: Server, path: str, body: object) -> httpx.Response:
    return httpx.post(f"{server.ingress_url}/{path}", json=body, timeout=60.0)


TASKS = "restate_invoker_invocation_tasks_total"
INGRESS = "restate_ingress_requests_total"


def test_calls_move_the_ingress_and_invoker_counters(services: Server) -> None:
    server = services
    before = scrape(server)
    for name in ("a", "b", "c"):
        assert call(server, "Greeter/greet", name).status_code == 200
    sent = call(server, "Greeter/greet/send", "d")
    assert sent.status_code == 202
    wait_for(
        "the sent call",
        lambda: (
            scrape(server).value(TASKS, status="completed") >= before.value(TASKS, status="completed") + 4
        ),
    )
    after = scrape(server)

    def moved(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert moved(INGRESS, status="completed", rpc_service="Greeter", rpc_type="call") == 3
    assert moved(INGRESS, status="completed", rpc_service="Greeter", rpc_type="send") == 1
    assert moved(TASKS, status="started") == 4
    assert moved(TASKS, status="completed") == 4
    assert moved("restate_invoker_client_requests_total", status_code="200") == 4


def test_retries_count_failed_attempts(services: Server) -> None:
    server = services
    before = scrape(server)
    resp = call(server, "Flaky/run", uuid.uuid4().hex[:12])
    assert resp.status_code == 200, resp.text
    after = scrape(server)
    failed = after.value(TASKS, status="failed", transient="true") - before.value(
        TASKS, status="failed", transient="true"
    )
    assert failed == ATTEMPTS_BEFORE_SUCCESS - 1


@pytest.mark.parametrize("name", [INGRESS, TASKS, "restate_invoker_client_requests_total"])
def test_core_series_carry_restate_label_keys(services: Server, name: str) -> None:
    keys = scrape(services).label_keys(name)
    assert keys, f"no {name} series"
    assert all(k >= NODE_LABELS for k in keys)
    expected = {
        INGRESS: {"status", "rpc_service", "rpc_type"},
        TASKS: {"status", "partition_id"},
        "restate_invoker_client_requests_total": {"type", "status_code"},
    }[name]
    assert any(expected <= k for k in keys), keys


def perdure_only(server: Server) -> None:
    if server.kind != "perdure":
        pytest.skip("a Perdure series (Restate has no per-handler or backlog metrics)")


def test_per_handler_outcomes_and_durations(services: Server) -> None:
    server = services
    perdure_only(server)
    before = scrape(server)
    assert call(server, "Greeter/greet", "e").status_code == 200
    assert call(server, "Terminal/fail", uuid.uuid4().hex[:12]).status_code == 409
    after = scrape(server)
    inv = "perdure_invocations_total"
    ok = dict(service="Greeter", handler="greet", outcome="success")
    bad = dict(service="Terminal", handler="fail", outcome="failure")
    assert after.value(inv, **ok) - before.value(inv, **ok) == 1
    assert after.value(inv, **bad) - before.value(inv, **bad) == 1
    count = "perdure_invocation_duration_seconds_count"
    assert (
        after.value(count, service="Greeter", handler="greet")
        - before.value(count, service="Greeter", handler="greet")
        == 1
    )
    assert after.value("perdure_store_commit_duration_seconds_count") > before.value(
        "perdure_store_commit_duration_seconds_count"
    )
    assert after.value("perdure_store_batch_commands_sum") > before.value("perdure_store_batch_commands_sum")


def test_inbox_depth_and_oldest_pending_age_per_service(services: Server, workspace: Workspace) -> None:
    server = services
    perdure_only(server)
    tag = uuid.uuid4().hex[:12]
    held = httpx.post(f"{server.ingress_url}/Tally/m1/hold/send", json=tag, timeout=30.0)
    assert held.status_code == 202
    for delta in (1, 2):
        assert (
            httpx.post(f"{server.ingress_url}/Tally/m1/add/send", json=delta, timeout=30.0).status_code == 202
        )
    wait_for("two queued", lambda: scrape(server).value("perdure_inbox_depth", service="Tally") == 2)
    wait_for(
        "an age", lambda: scrape(server).value("perdure_oldest_pending_age_seconds", service="Tally") > 0
    )
    workspace.open_gate(tag)
    wait_for("the inbox drained", lambda: scrape(server).value("perdure_inbox_depth", service="Tally") == 0)


def test_rule_state_running_waiting_tokens_admitted_and_delayed(
    services: Server, workspace: Workspace
) -> None:
    server = services
    perdure_only(server)
    tag = uuid.uuid4().hex[:12]
    hold, greet = "Tally/hold", "Greeter/greet"
    rules = [
        {"pattern": hold, "limits": {"concurrency": 1}},
        {"pattern": greet, "limits": {"rate_per_s": 0.01, "burst": 2}},
    ]
    assert put_rules(server, rules).status_code == 200
    try:
        for key in ("r1", "r2"):  # two keys: the rule, not the key lock, holds the second back
            resp = httpx.post(f"{server.ingress_url}/Tally/{key}/hold/send", json=tag, timeout=30.0)
            assert resp.status_code == 202
        rule = dict(rule=hold)
        wait_for("one runs, one waits", lambda: scrape(server).value("perdure_limit_waiting", **rule) == 1)
        held = scrape(server)
        assert held.value("perdure_limit_running", **rule) == 1
        assert held.value("perdure_limit_admitted_total", **rule) >= 1
        assert held.value("perdure_limit_delayed_total", **rule) >= 1
        assert held.label_keys("perdure_limit_running") == {frozenset({*NODE_LABELS, "rule"})}
        for name in ("a", "b"):
            assert call(server, greet, name).status_code == 200  # the burst of two
        rate = dict(rule=greet)
        spent = scrape(server)
        assert spent.value("perdure_limit_tokens", **rate) < 1, "the burst is spent"
        assert spent.value("perdure_limit_admitted_total", **rate) >= 2
        sent = httpx.post(f"{server.ingress_url}/{greet}/send", json="c", timeout=30.0)
        assert sent.status_code == 202
        wait_for(
            "the third waits for a token", lambda: scrape(server).value("perdure_limit_waiting", **rate) == 1
        )
        workspace.open_gate(tag)
        wait_for("the second hold ran", lambda: scrape(server).value("perdure_limit_waiting", **rule) == 0)
        assert scrape(server).value("perdure_limit_delayed_total", **rate) >= 1
    finally:
        workspace.open_gate(tag)
        assert delete_rules(server, [hold, greet]).status_code == 200
    gone = scrape(server)
    assert (
        gone.value("perdure_limit_running", rule=hold) == 0
        and gone.value("perdure_limit_waiting", rule=greet) == 0
    )
