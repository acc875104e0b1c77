"""Workflow scenarios (issue 5), run against each selected server (real Restate, Perdure).

A workflow's main handler runs once per key and waits on a durable promise that shared handlers
resolve, reject or peek; the result is read back by workflow key. Services: services/workflows.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.compat.workspace import Workspace, assert_ingress_error, new_tag
from tests.support import Ingress, PythonService, Server, register

WORKFLOWS_MODULE = "tests.compat.services.workflows"
ALREADY_INVOKED = "the workflow method was already invoked"


@pytest.fixture(scope="module")
def workflows_service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "workflows", WORKFLOWS_MODULE) as svc:
        register(server.admin_url, svc.url)
        yield svc


@pytest.fixture
async def ingress(server: Server, workflows_service: PythonService) -> AsyncIterator[Ingress]:
    async with Ingress(server.ingress_url) as ing:
        yield ing


async def workflow_result(ing: Ingress, key: str, how: str) -> httpx.Response:
    """GET /restate/workflow/Approval/{key}/attach (blocks) or /output (470 while running)."""
    return await ing.http.get(f"/restate/workflow/Approval/{key}/{how}")


async def shared(ing: Ingress, key: str, handler: str, body: object = None) -> object:
    resp = await ing.call(f"Approval/{key}/{handler}", body)
    assert resp.status_code == 200, resp.text
    return resp.json() if resp.content else None


async def wait_status(ing: Ingress, key: str, expected: str, timeout_s: float = 10.0) -> None:
    """Poll the shared `status` handler until it reads `expected` (state set by the run)."""
    seen: object = None
    try:
        async with asyncio.timeout(timeout_s):
            while (seen := await shared(ing, key, "status")) != expected:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"status of {key} stayed {seen!r}, expected {expected!r}") from None


async def test_workflow_waits_on_promise_that_a_shared_handler_resolves(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag = key = new_tag()
    sent = await ingress.send(f"Approval/{key}/run", {"tag": tag})
    assert (sent.status_code, sent.body["status"]) == (202, "Accepted")
    await wait_status(ingress, key, "waiting")
    assert_ingress_error(
        await workflow_result(ingress, key, "output"), 470, "the invocation exists but has not completed yet"
    )
    assert await shared(ingress, key, "peek") is None
    async with asyncio.TaskGroup() as tg:
        attached = tg.create_task(workflow_result(ingress, key, "attach"))
        await asyncio.sleep(0.2)
        assert not attached.done()
        assert await shared(ingress, key, "decide", "ann") is None
    resp = attached.result()
    assert (resp.status_code, resp.json()) == (200, "approved by ann"), resp.text
    assert resp.headers["x-restate-id"] == sent.invocation_id
    output = await workflow_result(ingress, key, "output")
    assert (output.status_code, output.content) == (200, resp.content)
    assert (await ingress.attach(sent.invocation_id)).json() == "approved by ann"
    assert await shared(ingress, key, "status") == "decided: ann"
    assert await shared(ingress, key, "peek") == "ann"
    assert workspace.ledger.events(tag) == ["run-start", "run-end"]


async def test_resubmitting_a_workflow_key_does_not_run_it_again(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag = key = new_tag()
    first = await ingress.send(f"Approval/{key}/run", {"tag": tag})
    again = await ingress.send(f"Approval/{key}/run", {"tag": "other"})
    assert (first.status_code, first.body["status"]) == (202, "Accepted")
    assert (again.status_code, again.body["status"]) == (202, "PreviouslyAccepted")
    assert again.invocation_id == first.invocation_id
    await shared(ingress, key, "decide", "bo")
    assert (await workflow_result(ingress, key, "attach")).json() == "approved by bo"
    sync = await ingress.call(f"Approval/{key}/run", {"tag": "other"})
    assert_ingress_error(sync, 409, ALREADY_INVOKED, source="invocation")
    assert sync.headers["x-restate-id"] == first.invocation_id
    late = await ingress.send(f"Approval/{key}/run", {"tag": "other"})
    assert (late.status_code, late.body["status"]) == (202, "PreviouslyAccepted")
    assert late.invocation_id == first.invocation_id
    assert workspace.ledger.events(tag) == ["run-start", "run-end"]
    assert workspace.ledger.events("other") == []


async def test_promise_resolved_before_the_workflow_awaits_it(ingress: Ingress, workspace: Workspace) -> None:
    tag = key = new_tag()
    sent = await ingress.send(f"Approval/{key}/run", {"tag": tag, "gated": True})
    await workspace.ledger.wait_for(tag, "run-start")
    await shared(ingress, key, "decide", "early")
    assert await shared(ingress, key, "peek") == "early"
    workspace.open_gate(tag)
    resp = await ingress.attach(sent.invocation_id)
    assert (resp.status_code, resp.json()) == (200, "approved by early"), resp.text


async def test_rejected_promise_fails_the_workflow_with_its_code(ingress: Ingress) -> None:
    key = new_tag()
    sent = await ingress.send(f"Approval/{key}/run", {"tag": key})
    await wait_status(ingress, key, "waiting")
    await shared(ingress, key, "refuse", "no budget")
    resp = await ingress.attach(sent.invocation_id)
    assert_ingress_error(resp, 403, "no budget", source="invocation")
    assert_ingress_error(await workflow_result(ingress, key, "output"), 403, "no budget", source="invocation")
    assert await shared(ingress, key, "status") == "rejected: no budget"


async def test_shared_handler_of_a_workflow_that_never_ran(ingress: Ingress) -> None:
    key = new_tag()
    assert await shared(ingress, key, "status") is None
    assert await shared(ingress, key, "peek") is None
    assert_ingress_error(await workflow_result(ingress, key, "output"), 404, "invocation not found")


# --- crash recovery (kills the module's server: keep last) ----------------------------------


async def test_waiting_workflow_and_its_promise_survive_a_server_kill(
    server: Server, workflows_service: PythonService, workspace: Workspace
) -> None:
    tag = key = new_tag()
    early_tag = early_key = new_tag()
    async with Ingress(server.ingress_url) as ing:
        sent = await ing.send(f"Approval/{key}/run", {"tag": tag})
        early = await ing.send(f"Approval/{early_key}/run", {"tag": early_tag, "gated": True})
        await wait_status(ing, key, "waiting")
        await workspace.ledger.wait_for(early_tag, "run-start")
        await shared(ing, early_key, "decide", "before-crash")
    server.kill()
    server.start()
    workspace.open_gate(early_tag)
    async with Ingress(server.ingress_url) as ing:
        assert await shared(ing, early_key, "peek") == "before-crash"
        assert await shared(ing, key, "status") == "waiting"
        await shared(ing, key, "decide", "after-crash")
        assert (await ing.attach(sent.invocation_id)).json() == "approved by after-crash"
        assert (await ing.attach(early.invocation_id)).json() == "approved by before-crash"
    assert workspace.ledger.events(tag) == ["run-start", "run-end"]
    assert workspace.ledger.events(early_tag) == ["run-start", "run-end"]
