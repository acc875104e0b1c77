"""Suspension on both servers: after the inactivity timeout the server closes the bidi
stream, the SDK suspends (status `suspended`), and resolving the awakeable resumes the
invocation from its journal: the step before the wait is not run again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.compat.test_timers_calls import wait_for_prefix
from tests.compat.workspace import Workspace, new_tag
from tests.support import Ingress, PythonService, Server, query, register

MODULE = "tests.compat.services.suspension"


@pytest.fixture(scope="module")
def patient(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "patient", MODULE) as svc:
        register(server.admin_url, svc.url)
        yield svc


async def wait_for_status(server: Server, invocation_id: str, status: str, timeout_s: float = 15.0) -> None:
    sql = f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'"
    seen: list[object] = []
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                rows = await asyncio.to_thread(query, server.admin_url, sql)
                seen = [r.get("status") for r in rows]
                if seen == [status]:
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"{invocation_id} never {status}; last seen {seen}") from None


async def test_idle_invocation_suspends_and_resumes_when_its_awakeable_is_resolved(
    server: Server, patient: PythonService, workspace: Workspace
) -> None:
    tag = new_tag()
    async with Ingress(server.ingress_url) as ing:
        sent = await ing.send("Patient/wait", tag)
        awakeable_id = await wait_for_prefix(workspace.ledger, tag, "awakeable ")
        await wait_for_status(server, sent.invocation_id, "suspended")
        resp = await ing.http.post(
            f"/restate/awakeables/{awakeable_id}/resolve",
            content=b'"later"',
            headers={"content-type": "application/json"},
        )
        assert resp.status_code == 202, resp.text
        done = await ing.attach(sent.invocation_id)
    assert (done.status_code, done.json()) == (200, {"value": "later"}), done.text
    events = workspace.ledger.events(tag)
    assert events.count(f"awakeable {awakeable_id}") == 1, events
    assert events.count("after") == 1, events
