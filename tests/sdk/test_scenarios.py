"""The SDK's "Done when" scenarios against a real server, once per SDK under test: Perdure's
and the official one run the same service file (tests/sdk/services/scenarios.py)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.sdk.harness import Deployment
from tests.support import Ingress, Server

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def deployment(
    sdk_server: Server, sdk: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    dep = Deployment(sdk, tmp_path_factory.mktemp(f"sdk-{sdk}"))
    try:
        yield dep.start(sdk_server.admin_url)
    finally:
        dep.kill()


@pytest.fixture
async def ingress(sdk_server: Server, deployment: Deployment) -> AsyncIterator[Ingress]:
    async with Ingress(sdk_server.ingress_url, timeout_s=30) as ing:
        yield ing


def tag() -> str:
    return uuid.uuid4().hex[:10]


def json_or_none(resp: httpx.Response) -> Any:
    """A handler that returns None answers with an empty body."""
    assert resp.status_code == 200, resp.text
    return resp.json() if resp.content else None


async def test_greeter_runs_one_durable_step(ingress: Ingress) -> None:
    resp = await ingress.call("Greeter/greet", "Ann")
    assert resp.status_code == 200
    assert resp.json() == "Hello, Ann!"


async def test_request_carries_id_and_headers(ingress: Ingress) -> None:
    resp = await ingress.call("Greeter/whoami", headers={"x-probe": "42"})
    assert resp.json() == ["inv_", "42"]


async def test_flaky_run_is_retried_until_it_succeeds(ingress: Ingress, deployment: Deployment) -> None:
    t = tag()
    resp = await ingress.call("Failures/flaky", t)
    assert resp.status_code == 200, resp.text
    assert resp.json() == 3
    assert deployment.ledger.events(t) == ["flaky"] * 3


async def test_run_retry_policy_gives_up_with_a_terminal_error(
    ingress: Ingress, deployment: Deployment
) -> None:
    t = tag()
    resp = await ingress.call("Failures/give_up", t)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "gave up: 500"
    assert deployment.ledger.events(t) == ["always"] * 3


async def test_terminal_error_fails_the_invocation_with_its_status(ingress: Ingress) -> None:
    resp = await ingress.call("Failures/refuse", "o-17")
    assert resp.status_code == 409
    assert "no such order o-17" in resp.text


async def test_random_and_uuid_repeat_across_a_retry(ingress: Ingress, deployment: Deployment) -> None:
    t = tag()
    resp = await ingress.call("Failures/dice", t)
    assert resp.status_code == 200, resp.text
    roll, ident = resp.json()
    drawn = [e for e in deployment.ledger.events(t) if e.startswith("drawn")]
    assert drawn == [f"drawn {roll} {ident}"] * 2
    assert uuid.UUID(ident).version == 4


async def test_counter_is_exact_under_40_concurrent_calls(ingress: Ingress) -> None:
    key = tag()
    results = await asyncio.gather(*(ingress.call(f"Counter/{key}/add", 1) for _ in range(40)))
    assert all(r.status_code == 200 for r in results)
    assert sorted(r.json() for r in results) == list(range(1, 41))
    assert (await ingress.call(f"Counter/{key}/current")).json() == 40


async def test_state_keys_clear_and_clear_all(ingress: Ingress) -> None:
    key = tag()
    resp = await ingress.call(f"Store/{key}/state_ops")
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"initial": ["a", "b", "profile"], "b": ["two"], "profile": ["Address", "Lyon"]}
    assert (await ingress.call(f"Store/{key}/keys")).json() == ["a", "b", "profile"]
    assert json_or_none(await ingress.call(f"Store/{key}/clear_a")) is None
    assert (await ingress.call(f"Store/{key}/keys")).json() == ["b", "profile"]
    assert json_or_none(await ingress.call(f"Store/{key}/wipe")) is None
    assert (await ingress.call(f"Store/{key}/keys")).json() == []


async def test_pydantic_model_in_and_out(ingress: Ingress) -> None:
    key = tag()
    resp = await ingress.call(f"Store/{key}/put_address", {"city": "Lyon", "zip": "69001"})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"city": "Lyon", "zip": "69001"}
    assert (await ingress.call(f"Store/{key}/keys")).json() == ["address"]


async def test_sleep_waits_at_least_its_duration(ingress: Ingress) -> None:
    started = time.monotonic()
    resp = await ingress.call("Timers/nap", 500)
    assert resp.status_code == 200, resp.text
    assert resp.json() >= 500
    assert time.monotonic() - started >= 0.5


async def test_select_and_gather(ingress: Ingress) -> None:
    resp = await ingress.call("Timers/race", 100)
    assert resp.status_code == 200, resp.text
    assert resp.json() == ["fast", "A", "B"]


async def test_awakeables_resolved_and_rejected_in_code_with_combinators(ingress: Ingress) -> None:
    resp = await ingress.call("Timers/combinators")
    assert resp.status_code == 200, resp.text
    assert resp.json() == ["1", "1", "one", "418 nope"]


async def test_cancel_signal_fails_the_target_with_409(ingress: Ingress) -> None:
    resp = await ingress.call("Caller/cancel_other", 30_000)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "cancelled: 409"


async def test_cancel_over_the_admin_api(ingress: Ingress, sdk_server: Server) -> None:
    sent = await ingress.send("Timers/nap", 30_000)
    await asyncio.sleep(0.3)
    async with httpx.AsyncClient(base_url=sdk_server.admin_url) as admin:
        assert (await admin.patch(f"/invocations/{sent.invocation_id}/cancel")).status_code in (200, 202)
    out = await ingress.attach(sent.invocation_id)
    assert out.status_code == 409
    assert "cancelled" in out.text


async def test_awakeable_resolved_over_http(ingress: Ingress) -> None:
    box = tag()
    sent = await ingress.send("Waiter/wait_for_approval", box)
    assert sent.status_code == 202
    awakeable_id = None
    async with asyncio.timeout(20):
        while awakeable_id is None:
            awakeable_id = json_or_none(await ingress.call(f"Mailbox/{box}/peek"))
            await asyncio.sleep(0.05)
    assert awakeable_id.startswith("sign_1")
    resolved = await ingress.http.post(
        f"/restate/awakeables/{awakeable_id}/resolve",
        json="yes",
        headers={"content-type": "application/json"},
    )
    assert resolved.status_code == 202
    out = await ingress.attach(sent.invocation_id)
    assert out.json() == "got yes"


async def test_call_send_and_delayed_send(ingress: Ingress) -> None:
    key = tag()
    started = time.monotonic()
    resp = await ingress.call("Caller/fan_out", key)
    assert resp.status_code == 200, resp.text
    assert resp.json() == 'Hello, Bob! / "Hello, Raw!"'
    async with asyncio.timeout(20):
        while (await ingress.call(f"Counter/{key}/current")).json() != 101:
            await asyncio.sleep(0.05)
        assert time.monotonic() - started < 0.8  # the delayed send has not landed yet
        while (await ingress.call(f"Counter/{key}/current")).json() != 111:
            await asyncio.sleep(0.05)
    assert time.monotonic() - started >= 0.8


async def test_workflow_promise_resolved_by_a_shared_handler(ingress: Ingress) -> None:
    key = tag()
    sent = await ingress.send(f"Approval/{key}/run", "report")
    assert sent.status_code == 202
    async with asyncio.timeout(20):
        while json_or_none(await ingress.call(f"Approval/{key}/status")) != "waiting":
            await asyncio.sleep(0.05)
    assert (await ingress.call(f"Approval/{key}/peek_approval")).json() == "None"
    assert (await ingress.call(f"Approval/{key}/approve", "boss")).status_code == 200
    assert (await ingress.call(f"Approval/{key}/peek_approval")).json() == "boss"
    out = await ingress.attach(sent.invocation_id)
    assert out.json() == "report approved by boss"
    assert (await ingress.call(f"Approval/{key}/status")).json() == "approved"


async def test_blocking_sync_run_does_not_stop_other_invocations(ingress: Ingress) -> None:
    blocked = asyncio.create_task(ingress.call("Steps/block", 1000))
    await asyncio.sleep(0.2)
    started = time.monotonic()
    greetings = await asyncio.gather(*(ingress.call("Greeter/greet", f"n{i}") for i in range(5)))
    elapsed = time.monotonic() - started
    assert [g.json() for g in greetings] == [f"Hello, n{i}!" for i in range(5)]
    assert not blocked.done()
    assert elapsed < 0.6
    assert (await blocked).json() == "unblocked"


async def test_unknown_handler_is_404(deployment: Deployment) -> None:
    async with httpx.AsyncClient(http2=False) as http:
        resp = await http.post(f"{deployment.process.url}/invoke/Nope/nothing")
    assert resp.status_code == 404
