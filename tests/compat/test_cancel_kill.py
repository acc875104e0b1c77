"""Cancel and kill through the admin API (issue 6), against each selected server.

`PATCH /invocations/{id}/cancel` delivers a cancellation the handler can compensate for, and it
travels down a tree of calls; `/kill` stops an invocation at once, without compensation, and
frees the Virtual Object key it held. Services: services/calls.py and services/objects.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests.compat.workspace import Workspace, assert_ingress_error, new_tag
from tests.support import Ingress, PythonService, Server, query, register

CALLS_MODULE = "tests.compat.services.calls"
OBJECTS_MODULE = "tests.compat.services.objects"
TREE_DEPTH = 3  # services/calls.py TREE_DEPTH
QUIET_S = 0.5  # how long "did not happen" is watched for
ADMIN_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def services(server: Server, workspace: Workspace) -> Iterator[list[PythonService]]:
    with (
        workspace.python_service("app", "calls", CALLS_MODULE) as calls,
        workspace.python_service("app", "objects", OBJECTS_MODULE) as objects,
    ):
        register(server.admin_url, calls.url)
        register(server.admin_url, objects.url)
        yield [calls, objects]


@pytest.fixture
async def ingress(server: Server, services: list[PythonService]) -> AsyncIterator[Ingress]:
    async with Ingress(server.ingress_url) as ing:
        yield ing


def admin_patch(server: Server, invocation_id: str, verb: str) -> httpx.Response:
    """PATCH /invocations/{id}/{verb} on the admin API (cancel, kill)."""
    return httpx.patch(f"{server.admin_url}/invocations/{invocation_id}/{verb}", timeout=ADMIN_TIMEOUT_S)


async def test_cancelled_sleeping_invocation_ends_with_cancelled_error(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    sent = await ingress.send("Timers/steps", {"tag": tag, "ms": 30_000})
    await workspace.ledger.wait_for(tag, "before-acked")
    resp = admin_patch(server, sent.invocation_id, "cancel")
    assert (resp.status_code, resp.content) == (202, b""), resp.text
    async with asyncio.timeout(10):
        attached = await ingress.attach(sent.invocation_id)
    assert_ingress_error(attached, 409, "cancelled", source="invocation")
    assert_ingress_error(await ingress.output(sent.invocation_id), 409, "cancelled", source="invocation")
    assert workspace.ledger.events(tag) == ["before", "before-acked"]
    again = admin_patch(server, sent.invocation_id, "cancel")
    assert again.status_code == 409, again.text
    assert again.json()["message"] == f"The invocation '{sent.invocation_id}' was already completed."


async def test_cancelling_the_root_of_a_call_tree_runs_compensation_at_every_level(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    root = await ingress.send("Tree/level", {"tag": tag, "depth": 1})
    await workspace.ledger.wait_for(tag, f"enter {TREE_DEPTH}")
    await asyncio.sleep(0.2)  # let the leaf journal its sleep
    assert admin_patch(server, root.invocation_id, "cancel").status_code == 202
    async with asyncio.timeout(10):
        attached = await ingress.attach(root.invocation_id)
    assert_ingress_error(attached, 409, "cancelled", source="invocation")
    for depth in range(1, TREE_DEPTH + 1):
        await workspace.ledger.wait_for(tag, f"compensate {depth} 409 cancelled", timeout_s=10)
    await asyncio.sleep(QUIET_S)
    compensations = sorted(e for e in workspace.ledger.events(tag) if e.startswith("compensate"))
    assert compensations == [f"compensate {d} 409 cancelled" for d in range(1, TREE_DEPTH + 1)]


async def test_killed_call_tree_runs_no_compensation(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    root = await ingress.send("Tree/level", {"tag": tag, "depth": 1})
    await workspace.ledger.wait_for(tag, f"enter {TREE_DEPTH}")
    resp = admin_patch(server, root.invocation_id, "kill")
    assert (resp.status_code, resp.content) == (200, b""), resp.text
    async with asyncio.timeout(10):
        attached = await ingress.attach(root.invocation_id)
    assert_ingress_error(attached, 409, "killed", source="invocation")
    await asyncio.sleep(QUIET_S)
    assert [e for e in workspace.ledger.events(tag) if e.startswith("compensate")] == []
    children = query(
        server.admin_url,
        "SELECT target, status, completion_failure FROM sys_invocation "
        f"WHERE invoked_by_id = '{root.invocation_id}'",
    )
    assert [(c["target"], c["status"], c.get("completion_failure")) for c in children] == [
        ("Tree/level", "completed", "[409] killed")
    ]


async def test_killing_the_handler_holding_a_key_lets_the_next_call_start_at_once(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    tag = key = new_tag()
    held = await ingress.send(f"Tally/{key}/hold", tag)
    await workspace.ledger.wait_for(tag, f"hold-start {key}")
    queued = await ingress.send(f"Tally/{key}/touch", tag)
    await asyncio.sleep(QUIET_S)
    assert workspace.ledger.events(tag) == [f"hold-start {key}"]
    assert admin_patch(server, held.invocation_id, "kill").status_code == 200
    try:
        async with asyncio.timeout(5):
            touched = await ingress.attach(queued.invocation_id)
        assert (touched.status_code, touched.json()) == (200, key), touched.text
        assert_ingress_error(await ingress.attach(held.invocation_id), 409, "killed", source="invocation")
        assert (await ingress.call(f"Tally/{key}/log")).json() == {"seq": [], "count": 0}
        assert workspace.ledger.events(tag) == [f"hold-start {key}", f"touch {key}"]
    finally:
        workspace.open_gate(tag)  # release the killed attempt's step still polling in the service


async def test_cancel_and_kill_of_completed_or_malformed_ids(server: Server, ingress: Ingress) -> None:
    done = await ingress.call("Callee/echo", "x")
    invocation_id = done.headers["x-restate-id"]
    for verb in ("cancel", "kill"):
        resp = admin_patch(server, invocation_id, verb)
        assert resp.status_code == 409, resp.text
        assert resp.json()["message"] == f"The invocation '{invocation_id}' was already completed."
        bad = admin_patch(server, "inv_1nope", verb)
        assert bad.status_code == 400, bad.text
        assert bad.json()["message"] == "The request field 'invocation_id' is invalid. Reason: bad length"
