"""Scenarios that stop or change the SDK process: a crash mid-invocation, code changed under a
running invocation (non-determinism), and request-response mode. Once per SDK under test."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.sdk.harness import VERSIONED, Deployment, wait_for_row
from tests.support import Ingress, Server

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def deployments() -> Iterator[list[Deployment]]:
    started: list[Deployment] = []
    try:
        yield started
    finally:
        for dep in started:
            dep.kill()


async def test_sdk_killed_mid_invocation_resumes_without_redoing_steps(
    sdk_server: Server, sdk: str, workdir: Path, deployments: list[Deployment]
) -> None:
    dep = Deployment(sdk, workdir).start(sdk_server.admin_url)
    deployments.append(dep)
    tag = uuid.uuid4().hex[:10]
    async with Ingress(sdk_server.ingress_url, timeout_s=60) as ingress:
        sent = await ingress.send("Steps/three_steps", tag)
        assert sent.status_code == 202
        await dep.ledger.wait_for(tag, "one")
        # Step one is durable once the SDK has moved on to the sleep (it awaited the run's
        # acknowledgement); a kill before that may rightly run it again.
        await wait_for_row(
            sdk_server.admin_url,
            f"SELECT index FROM sys_journal WHERE id = '{sent.invocation_id}'"
            " AND entry_type = 'Command: Sleep'",
        )
        dep.restart()  # SIGKILL during the durable sleep, then the same deployment comes back
        out = await ingress.attach(sent.invocation_id)
    assert out.status_code == 200, out.text
    assert out.json() == "done"
    assert dep.ledger.events(tag) == ["one", "two"]


async def test_changed_step_order_fails_with_a_non_determinism_error(
    sdk_server: Server, sdk: str, workdir: Path, deployments: list[Deployment]
) -> None:
    dep = Deployment(sdk, workdir, module=VERSIONED).start(sdk_server.admin_url)
    deployments.append(dep)
    tag = uuid.uuid4().hex[:10]
    async with Ingress(sdk_server.ingress_url) as ingress:
        sent = await ingress.send("Changing/ordered", tag)
        assert sent.status_code == 202
        await dep.ledger.wait_for(tag, "v1 alpha")
        # The alpha step is in the journal once the SDK has moved on to the sleep; a kill before
        # that leaves a journal v2 can replay without a mismatch (a loaded CI machine did).
        await wait_for_row(
            sdk_server.admin_url,
            f"SELECT index FROM sys_journal WHERE id = '{sent.invocation_id}'"
            " AND entry_type = 'Command: Sleep'",
        )
        dep.restart(SCENARIO_VERSION="v2")
        row = await wait_for_row(
            sdk_server.admin_url,
            "SELECT last_failure, last_failure_error_code, last_failure_related_command_index "
            f"FROM sys_invocation WHERE id = '{sent.invocation_id}' AND last_failure LIKE '%alpha%'",
            # Retries while the SDK was down back off (Restate's up to 10 s between attempts).
            timeout_s=60.0,
        )
    assert row["last_failure"].startswith("[570 Journal mismatch]"), row
    assert "beta" in row["last_failure"], row
    assert row["last_failure_error_code"] == "RT0016", row
    assert row["last_failure_related_command_index"] == 1, row
    assert dep.ledger.events(tag) == ["v1 alpha"]  # v2 never ran a step on the v1 journal


async def test_request_response_mode_suspends_and_resumes(
    sdk_server: Server, sdk: str, workdir: Path, deployments: list[Deployment]
) -> None:
    dep = Deployment(sdk, workdir, module=VERSIONED, app_attr="rr_app").start(sdk_server.admin_url)
    deployments.append(dep)
    async with httpx.AsyncClient() as http:
        accept = {"accept": "application/vnd.restate.endpointmanifest.v4+json"}
        manifest = (await http.get(f"{dep.process.url}/discover", headers=accept)).json()
    assert manifest["protocolMode"] == "REQUEST_RESPONSE"
    async with Ingress(sdk_server.ingress_url) as ingress:
        resp = await ingress.call("Sequencer/sequence", "x")
        assert resp.status_code == 200, resp.text
        assert resp.json() == ["a", "b"]
        rows = await asyncio.wait_for(
            wait_for_row(
                sdk_server.admin_url,
                "SELECT journal_commands_size FROM sys_invocation WHERE target = 'Sequencer/sequence'",
            ),
            20,
        )
    assert rows["journal_commands_size"] == 5  # input, run, sleep, run, output
