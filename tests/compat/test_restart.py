"""Restart-as-new and retry-now (issue 15), against each selected server.

`PATCH /invocations/{id}/restart-as-new` runs a completed invocation again as a new one with the
same input (the official CLI's `restate invocations restart-as-new` drives it); `?from=N` keeps
the journal up to entry N and the completions of its commands, so those steps do not run again.
`PATCH /invocations/{id}/resume` on a backing-off invocation retries it now. Perdure's batch
endpoint (`POST /invocations/batch`) has no Restate counterpart and is tested on Perdure only.
Services: services/restart.py.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.test_cli import ok, restate
from tests.compat.workspace import Workspace, new_tag
from tests.support import Ingress, PythonService, Server, query, register

RESTART_MODULE = "tests.compat.services.restart"
ADMIN_TIMEOUT_S = 10.0
CALL_TIMEOUT_S = 20.0
INPUT_ENTRY, STEP_ONE_COMPLETION = 0, 2  # Input, Run one, Notification one, Run two, ...


@pytest.fixture(scope="module")
def service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "restart", RESTART_MODULE) as svc:
        register(server.admin_url, svc.url)
        yield svc


@pytest.fixture
async def ingress(server: Server, service: PythonService) -> AsyncIterator[Ingress]:
    async with Ingress(server.ingress_url) as ing:
        yield ing


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("restate-cli-home")


def restart(server: Server, invocation_id: str, **params: Any) -> httpx.Response:
    return httpx.patch(
        f"{server.admin_url}/invocations/{invocation_id}/restart-as-new",
        params=params,
        timeout=ADMIN_TIMEOUT_S,
    )


async def completed_steps(ingress: Ingress, tag: str) -> tuple[str, list[str]]:
    """A finished `Restartable/steps` invocation: its id and its output."""
    sent = await ingress.send("Restartable/steps", {"tag": tag, "n": 1})
    async with asyncio.timeout(CALL_TIMEOUT_S):
        out = await ingress.attach(sent.invocation_id)
    assert out.status_code == 200, out.text
    return sent.invocation_id, out.json()


async def output_of(ingress: Ingress, invocation_id: str) -> list[str]:
    async with asyncio.timeout(CALL_TIMEOUT_S):
        out = await ingress.attach(invocation_id)
    assert out.status_code == 200, out.text
    result: list[str] = out.json()
    return result


async def test_cli_restart_as_new_runs_the_invocation_again_with_the_same_input(
    server: Server, ingress: Ingress, workspace: Workspace, home: Path
) -> None:
    tag = new_tag()
    old_id, first = await completed_steps(ingress, tag)
    printed = ok(restate(server, home, "invocations", "restart-as-new", old_id, "--yes"))
    assert "Restarted 1 invocations" in printed, printed
    new_ids = [i for i in re.findall(r"inv_[0-9A-Za-z]+", printed) if i != old_id]
    assert len(set(new_ids)) == 1, printed
    new_id = new_ids[0]
    assert new_id[:16] == old_id[:16], "the new id keeps the partition key of the old one"
    again = await output_of(ingress, new_id)
    assert set(again).isdisjoint(first), "both steps ran again"
    assert workspace.ledger.events(tag) == ["one", "two", "one", "two"]
    rows = query(
        server.admin_url, f"SELECT restarted_from, invoked_by FROM sys_invocation WHERE id = '{new_id}'"
    )
    assert rows == [{"restarted_from": old_id, "invoked_by": "restart_as_new"}]


async def test_restart_from_a_journal_prefix_keeps_the_steps_recorded_there(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    old_id, first = await completed_steps(ingress, tag)
    resp = restart(server, old_id, **{"from": STEP_ONE_COMPLETION})
    assert resp.status_code == 200, resp.text
    kept = await output_of(ingress, resp.json()["new_invocation_id"])
    assert kept[0] == first[0] and kept[1] != first[1]
    assert workspace.ledger.events(tag) == ["one", "two", "two"]
    # Up to a command whose completion follows it: the completion is copied along.
    resp = restart(server, old_id, **{"from": 3})
    assert resp.status_code == 200, resp.text
    assert await output_of(ingress, resp.json()["new_invocation_id"]) == first
    assert workspace.ledger.events(tag) == ["one", "two", "two"]
    # From the input only: everything runs again.
    resp = restart(server, old_id, **{"from": INPUT_ENTRY})
    assert resp.status_code == 200, resp.text
    assert set(await output_of(ingress, resp.json()["new_invocation_id"])).isdisjoint(first)


async def test_restart_as_new_refuses_what_it_cannot_restart(server: Server, ingress: Ingress) -> None:
    old_id, _ = await completed_steps(ingress, new_tag())
    past_end = restart(server, old_id, **{"from": 99})
    assert past_end.status_code == 400
    assert "contains some Commands without respective Completions" in past_end.json()["message"]
    bad_from = restart(server, old_id, **{"from": "x"})
    assert bad_from.status_code == 400
    assert restart(server, "inv_1nope").status_code == 400
    unknown = old_id[:-1] + ("a" if old_id[-1] != "a" else "b")
    missing = restart(server, unknown)
    assert missing.status_code == 404
    assert missing.json()["message"] == f"The requested invocation '{unknown}' does not exist"
    running = await ingress.send("Restartable/sleep", 60_000)
    resp = restart(server, running.invocation_id)
    assert resp.status_code == 409
    assert resp.json()["message"] == f"The invocation '{running.invocation_id}' is still running."
    scheduled = await ingress.send("Restartable/sleep", 1, delay="1h")
    resp = restart(server, scheduled.invocation_id)
    assert resp.status_code == 425
    assert "cannot be restarted because it's not running yet" in resp.json()["message"]
    wf = await ingress.send(f"RestartWf/{new_tag()}/run", 1)
    async with asyncio.timeout(CALL_TIMEOUT_S):
        assert (await ingress.attach(wf.invocation_id)).status_code == 200
    resp = restart(server, wf.invocation_id)
    assert resp.status_code == 422
    assert "Restarting workflows is not supported" in resp.json()["message"]
    for inv in (running, scheduled):
        httpx.patch(f"{server.admin_url}/invocations/{inv.invocation_id}/kill", timeout=ADMIN_TIMEOUT_S)


async def test_resume_retries_a_backing_off_invocation_now(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    """The retry policy waits an hour between attempts; resume starts the next one at once."""
    tag = new_tag()
    sent = await ingress.send("Restartable/failing", tag)
    await workspace.ledger.wait_for(tag, "attempt")
    await wait_status(server, sent.invocation_id, "backing-off")
    resp = httpx.patch(f"{server.admin_url}/invocations/{sent.invocation_id}/resume", timeout=ADMIN_TIMEOUT_S)
    assert resp.status_code == 200, resp.text
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while workspace.ledger.count(tag, "attempt") < 2:
            await asyncio.sleep(0.05)
    httpx.patch(f"{server.admin_url}/invocations/{sent.invocation_id}/kill", timeout=ADMIN_TIMEOUT_S)


async def wait_status(server: Server, invocation_id: str, status: str) -> None:
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while True:
            rows = query(server.admin_url, f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'")
            if rows and rows[0]["status"] == status:
                return
            await asyncio.sleep(0.05)


async def test_batch_endpoint_applies_one_operation_to_many_invocations(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    if not server.kind.startswith("perdure"):
        pytest.skip("the batch endpoint is Perdure's (Restate has none)")
    tags = [new_tag() for _ in range(3)]
    done = [(await completed_steps(ingress, tag))[0] for tag in tags]
    resp = httpx.post(
        f"{server.admin_url}/invocations/batch",
        json={"operation": "restart-as-new", "invocation_ids": [*done, "inv_1bad"]},
        timeout=ADMIN_TIMEOUT_S,
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["operation"], body["succeeded"], body["failed"]) == ("restart-as-new", 3, 1)
    by_id = {r["invocation_id"]: r for r in body["results"]}
    assert by_id["inv_1bad"]["status"] == 400
    new_ids = [by_id[i]["new_invocation_id"] for i in done]
    for new_id in new_ids:
        await output_of(ingress, new_id)
    assert all(workspace.ledger.events(tag) == ["one", "two", "one", "two"] for tag in tags)
    sleeping = [(await ingress.send("Restartable/sleep", 60_000)).invocation_id for _ in range(2)]
    resp = httpx.post(  # the operation in the path, as the web UI sends it
        f"{server.admin_url}/invocations/batch/kill",
        json={"invocation_ids": [*sleeping, done[0]]},
        timeout=ADMIN_TIMEOUT_S,
    )
    statuses = [r["status"] for r in resp.json()["results"]]
    assert statuses == [200, 200, 409], resp.text
    assert resp.json()["failed_invocation_ids"] == [done[0]]
    resp = httpx.post(
        f"{server.admin_url}/invocations/batch",
        json={"operation": "purge", "invocation_ids": [*sleeping, *new_ids]},
        timeout=ADMIN_TIMEOUT_S,
    )
    assert resp.json()["succeeded"] == 5, resp.text
    rows = query(
        server.admin_url, f"SELECT id FROM sys_invocation WHERE id IN ({', '.join(repr(i) for i in new_ids)})"
    )
    assert rows == []
    bad = httpx.post(
        f"{server.admin_url}/invocations/batch",
        json={"operation": "explode", "invocation_ids": []},
        timeout=10,
    )
    assert bad.status_code == 422
