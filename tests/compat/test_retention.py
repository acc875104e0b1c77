"""Retention, on both servers: an idempotent call retained 2 s answers a new invocation once
its retention is over; `PATCH /invocations/{id}/purge-journal` drops the journal of a completed
invocation and keeps its output. (Perdure's cleanup and space reclaim: tests/integration.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.compat.workspace import Workspace, new_tag
from tests.support import PythonService, Server, make_server, query, register, selected_servers

DEADLINE_S = 60.0
# Restate purges expired invocations only in its cleanup pass (every hour by default).
CONFIG = '[worker]\ncleanup-interval = "1s"\n'


@pytest.fixture(scope="module", params=selected_servers())
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"retention-{request.param}")
    (root / "restate.toml").write_text(CONFIG)
    with make_server(str(request.param), root / "data", root / "restate.toml") as srv:
        yield srv


@pytest.fixture(scope="module")
def greeter(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "main") as svc:
        register(server.admin_url, svc.url)
        yield svc


def _call(server: Server, key: str, path: str = "Greeter/greet", body: str = "Ret") -> httpx.Response:
    resp = httpx.post(f"{server.ingress_url}/{path}", json=body, headers={"idempotency-key": key}, timeout=30)
    assert resp.status_code == 200, resp.text
    return resp


def test_idempotent_call_answers_a_new_invocation_after_its_retention(
    server: Server, greeter: PythonService
) -> None:
    patched = httpx.patch(
        f"{server.admin_url}/services/Steps", json={"idempotency_retention": "2s"}, timeout=10
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["idempotency_retention"] == "2s"
    key, tag = new_tag(), new_tag()
    first = _call(server, key, "Steps/once", tag).json()["token"]
    # Within its retention the key answers the same invocation's output (the step does not run again).
    assert _call(server, key, "Steps/once", tag).json()["token"] == first
    deadline = time.monotonic() + DEADLINE_S
    while (again := _call(server, key, "Steps/once", tag).json()["token"]) == first:
        assert time.monotonic() < deadline, "the idempotency key never expired"
        time.sleep(0.5)
    assert again != first  # a new invocation ran the step again


def test_purge_journal_keeps_the_output(server: Server, greeter: PythonService) -> None:
    key = new_tag()
    inv = _call(server, key).headers["x-restate-id"]
    journal = f"SELECT index FROM sys_journal WHERE id = '{inv}'"
    assert query(server.admin_url, journal)
    resp = httpx.patch(f"{server.admin_url}/invocations/{inv}/purge-journal", timeout=10)
    assert resp.status_code == 200, resp.text
    assert query(server.admin_url, journal) == []
    out = httpx.get(f"{server.ingress_url}/restate/invocation/{inv}/output", timeout=10)
    assert out.status_code == 200, out.text
    assert out.json() == "Hello, Ret!"
    status = query(server.admin_url, f"SELECT status FROM sys_invocation WHERE id = '{inv}'")
    assert status == [{"status": "completed"}]
