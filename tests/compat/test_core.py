"""Server-core "Done when" scenarios, run against each selected server (real Restate, Perdure).

Official-SDK services (tests/compat/services) are registered through the admin API and invoked
through the ingress exactly as a user would. A side-effect ledger written by the services proves
how often each step ran. Select servers with PERDURE_TEST_SERVERS=restate|perdure or `-k restate`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.compat.workspace import Workspace, assert_ingress_error, new_tag
from tests.support import Ingress, NodeService, PythonService, Server, register

SERVICES_DIR = Path(__file__).parent / "services"
VERSIONED_MODULE = "tests.compat.services.versioned"
INGRESS_BODY_LIMIT_BYTES = 32 * 1024 * 1024  # Restate 1.7.12 ingress.request-size-limit


@pytest.fixture(scope="module")
def core_service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    """The bidi official-Python-SDK endpoint with every core service, registered on `server`."""
    with workspace.python_service("app", "main") as svc:
        register(server.admin_url, svc.url)
        yield svc


@pytest.fixture
async def ingress(server: Server, core_service: PythonService) -> AsyncIterator[Ingress]:
    async with Ingress(server.ingress_url) as ing:
        yield ing


# --- registration and a first call ---------------------------------------------------------


async def test_python_service_registers_and_greets(server: Server, ingress: Ingress) -> None:
    resp = await ingress.call("Greeter/greet", "Sarah")
    assert resp.status_code == 200, resp.text
    assert resp.json() == "Hello, Sarah!"
    assert resp.headers["content-type"] == "application/json"
    assert resp.headers["x-restate-id"].startswith("inv_1")


async def test_typescript_service_registers_and_greets(server: Server, workspace: Workspace) -> None:
    with NodeService(
        SERVICES_DIR / "greeter.cjs", env={"SERVICE_PREFIX": "Ts"}, log_dir=workspace.root
    ) as svc:
        deployment_id = register(server.admin_url, svc.url)
        assert deployment_id.startswith("dp_")
        async with Ingress(server.ingress_url) as ing:
            resp = await ing.call("TsGreeter/greet", "Sarah")
            assert resp.status_code == 200, resp.text
            assert resp.json() == "Hello, Sarah!"
            key = new_tag()
            assert (await ing.call(f"TsCounter/{key}/add", 2)).json() == 2
            assert (await ing.call(f"TsCounter/{key}/add", 3)).json() == 5
            assert (await ing.call(f"TsCounter/{key}/get")).json() == 5


def test_registering_the_same_uri_again_answers_200_with_the_same_id(
    server: Server, core_service: PythonService
) -> None:
    listed = httpx.get(f"{server.admin_url}/deployments", timeout=10).json()["deployments"]
    [existing] = [d for d in listed if d["uri"] == f"{core_service.url}/"]
    assert existing["protocol_type"] == "BidiStream"
    again = httpx.post(f"{server.admin_url}/deployments", json={"uri": core_service.url}, timeout=30)
    assert again.status_code == 200, again.text
    assert again.json()["id"] == existing["id"]


# --- retries and failures ------------------------------------------------------------------


async def test_run_block_failing_twice_succeeds_on_third_attempt(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    resp = await ingress.call("Flaky/run", tag)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "ok after 3"
    assert workspace.ledger.events(tag) == ["attempt"] * 3


async def test_terminal_error_reaches_caller_and_is_not_retried(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    resp = await ingress.call("Terminal/fail", tag)
    assert_ingress_error(resp, 409, "no such order", source="invocation")
    invocation_id = resp.headers["x-restate-id"]
    await asyncio.sleep(0.7)  # past the first retry interval (500 ms): nothing may run again
    assert workspace.ledger.events(tag) == ["check"]
    again = await ingress.output(invocation_id)
    assert_ingress_error(again, 409, "no such order", source="invocation")


# --- idempotency ---------------------------------------------------------------------------


async def test_calls_with_one_idempotency_key_run_once_and_return_same_body(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag, key = new_tag(), new_tag()
    first = await ingress.call("Steps/once", tag, idempotency_key=key)
    second = await ingress.call("Steps/once", tag, idempotency_key=key)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.content == second.content
    assert first.json()["tag"] == tag
    assert first.headers["x-restate-id"] == second.headers["x-restate-id"]
    assert "idempotency-expires" in second.headers
    assert workspace.ledger.events(tag) == ["step"]


async def test_sends_with_one_idempotency_key_return_same_invocation_id(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag, key = new_tag(), new_tag()
    first = await ingress.send("Steps/once", tag, idempotency_key=key)
    second = await ingress.send("Steps/once", tag, idempotency_key=key)
    assert (first.status_code, first.body["status"]) == (202, "Accepted")
    assert (second.status_code, second.body["status"]) == (202, "PreviouslyAccepted")
    assert first.invocation_id == second.invocation_id
    assert (await ingress.attach(first.invocation_id)).json()["tag"] == tag
    assert workspace.ledger.events(tag) == ["step"]


# --- crashes -------------------------------------------------------------------------------


async def test_service_killed_inside_step_completes_without_rerunning_journaled_steps(
    ingress: Ingress, workspace: Workspace, core_service: PythonService
) -> None:
    tag = new_tag()
    sent = await ingress.send("Steps/gated", tag)
    await workspace.ledger.wait_for(tag, "two-start")
    core_service.kill()
    workspace.open_gate(tag)
    core_service.start()
    resp = await ingress.attach(sent.invocation_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == f"gated {tag} on main"
    seen = workspace.ledger.events(tag)
    assert seen.count("one") == 1, seen  # journaled before the crash: replayed, not re-run
    assert seen.count("two-start") == 2, seen  # interrupted step runs again
    assert seen.count("two-end") == 1, seen


async def test_server_killed_mid_invocation_completes_after_restart(
    server: Server, core_service: PythonService, workspace: Workspace
) -> None:
    tag = new_tag()
    async with Ingress(server.ingress_url) as ing:
        sent = await ing.send("Steps/sleepy", {"tag": tag, "sleep_ms": 1500})
        assert sent.status_code == 202
        await workspace.ledger.wait_for(tag, "one-acked")
    server.kill()
    server.start()
    async with Ingress(server.ingress_url) as ing:
        resp = await ing.attach(sent.invocation_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == f"sleepy {tag} on main"
    seen = workspace.ledger.events(tag)
    assert seen.count("one") == 1, seen
    assert seen.count("two") == 1, seen


# --- deployments ---------------------------------------------------------------------------


async def test_request_response_deployment_runs_steps_around_a_sleep(
    server: Server, workspace: Workspace
) -> None:
    with workspace.python_service("rr_app", "rr") as svc:
        deployment_id = register(server.admin_url, svc.url)
        info = httpx.get(f"{server.admin_url}/deployments/{deployment_id}", timeout=10).json()
        assert info["protocol_type"] == "RequestResponse"
        async with Ingress(server.ingress_url) as ing:
            greet = await ing.call("RrGreeter/greet", "Sarah")
            assert greet.status_code == 200, greet.text
            assert greet.json() == "Hello, Sarah!"
            tag = new_tag()
            resp = await ing.call("RrSteps/sleepy", {"tag": tag, "sleep_ms": 500})
    assert resp.status_code == 200, resp.text
    assert resp.json() == f"sleepy {tag} on rr"
    seen = workspace.ledger.events(tag)
    assert (seen.count("one"), seen.count("two")) == (1, 1), seen


async def test_new_deployment_takes_new_calls_while_inflight_invocation_stays_on_old(
    server: Server, workspace: Workspace
) -> None:
    tag = new_tag()
    with (
        workspace.python_service("app", "v1", VERSIONED_MODULE) as v1,
        workspace.python_service("app", "v2", VERSIONED_MODULE) as v2,
    ):
        first_id = register(server.admin_url, v1.url)
        async with Ingress(server.ingress_url) as ing:
            assert (await ing.call("Versioned/which")).json() == "v1"
            sent = await ing.send("Versioned/slow", {"tag": tag, "sleep_ms": 1500})
            await workspace.ledger.wait_for(tag, "start-acked")
            second_id = register(server.admin_url, v2.url)
            assert second_id != first_id
            assert (await ing.call("Versioned/which")).json() == "v2"
            resp = await ing.attach(sent.invocation_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "v1"
    assert workspace.ledger.events(tag) == ["start v1", "start-acked", "end v1"]


# --- ingress surface -----------------------------------------------------------------------


async def test_unknown_service_and_handler_are_404(ingress: Ingress) -> None:
    assert_ingress_error(
        await ingress.call("Nope/x", 1),
        404,
        "service 'Nope' not found, make sure to register the service before calling it.",
    )
    assert_ingress_error(
        await ingress.call("Greeter/nope", 1),
        404,
        "the service 'Greeter' exists, but the handler 'nope' was not found, check that the handler "
        "exists in the latest registered service version.",
    )


async def test_bad_paths_are_400(ingress: Ingress) -> None:
    bad = "bad path, expected either /:service-name/:handler or /:object-name/:object-key/:handler"
    assert_ingress_error(await ingress.call("Counter/add", 1), 400, bad)
    assert_ingress_error(await ingress.call("Greeter/k/greet", "x"), 400, bad)
    assert_ingress_error(await ingress.http.get("/"), 400, "bad path: /")


async def test_declared_body_over_the_limit_is_413(server: Server, core_service: PythonService) -> None:
    # Restate answers from the content-length header alone, before reading the body:
    # 413, text/plain "length limit exceeded". httpx cannot show that (it is still uploading
    # when the server closes), so this speaks raw HTTP/1.1.
    host, port = "127.0.0.1", server.ingress_port
    head = (
        f"POST /Greeter/greet HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {INGRESS_BODY_LIMIT_BYTES + 1}\r\n\r\n"
    )
    async with asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(head.encode() + b'"xxxx')
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
    assert status_line.split(b" ")[1] == b"413", status_line


async def test_send_answers_202_with_invocation_id(ingress: Ingress) -> None:
    resp = await ingress.http.post(
        "/Greeter/greet/send", content=b'"Ann"', headers={"content-type": "application/json"}
    )
    assert resp.status_code == 202, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"invocationId", "status"}
    assert body["status"] == "Accepted"
    assert body["invocationId"].startswith("inv_1")
    assert resp.headers["x-restate-id"] == body["invocationId"]
    assert (await ingress.attach(body["invocationId"])).json() == "Hello, Ann!"


async def test_delayed_send_runs_after_the_delay(ingress: Ingress) -> None:
    started = time.monotonic()
    sent = await ingress.send("Greeter/greet", "Bo", delay="1s")
    assert sent.status_code == 202
    assert set(sent.body) == {"invocationId", "executionTime", "status"}
    assert sent.body["status"] == "Accepted"
    assert sent.body["executionTime"].endswith("Z")
    assert (await ingress.output(sent.invocation_id)).status_code == 470
    resp = await ingress.attach(sent.invocation_id)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "Hello, Bo!"
    assert time.monotonic() - started >= 0.9


async def test_bad_delay_is_400(ingress: Ingress) -> None:
    resp = await ingress.http.post(
        "/Greeter/greet/send",
        params={"delay": "abc"},
        content=b'"x"',
        headers={"content-type": "application/json"},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["message"].startswith("bad delay query parameter")


async def test_output_is_470_while_running_and_attach_waits_for_result(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    sent = await ingress.send("Steps/gated", tag)
    await workspace.ledger.wait_for(tag, "two-start")
    assert_ingress_error(
        await ingress.output(sent.invocation_id), 470, "the invocation exists but has not completed yet"
    )
    async with asyncio.TaskGroup() as tg:
        attached = tg.create_task(ingress.attach(sent.invocation_id))
        await asyncio.sleep(0.2)
        assert not attached.done()
        workspace.open_gate(tag)
    resp = attached.result()
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-restate-id"] == sent.invocation_id
    done = await ingress.output(sent.invocation_id)
    assert (done.status_code, done.content) == (200, resp.content)


async def test_attach_and_output_of_unknown_or_malformed_id(ingress: Ingress) -> None:
    sent = await ingress.send("Greeter/greet", "Cy")
    real = sent.invocation_id
    unknown = real[:-1] + ("1" if real[-1] != "1" else "2")
    # Observed on Restate 1.7.12: attach and output word the same miss differently.
    assert_ingress_error(await ingress.attach(unknown), 404, "not found", source="invocation")
    assert_ingress_error(await ingress.output(unknown), 404, "invocation not found")
    assert_ingress_error(await ingress.attach("inv_1nope"), 400, "bad invocation id 'inv_1nope': bad length")
