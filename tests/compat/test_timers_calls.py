"""Timers, awakeables and service-to-service calls (issue 6), against each selected server.

Official Python SDK services (services/calls.py) sleep, wait on awakeables resolved from the
ingress or from other handlers, call and send to each other (also with a delay) and attach to
other invocations. The ledger proves how often each step or delivery ran.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests.compat.services.ledger import Ledger
from tests.compat.test_core import Workspace, assert_ingress_error, new_tag, workspace
from tests.support import Ingress, PythonService, Server, register
from tests.support.fixtures import running_server

__all__ = ["workspace"]  # the module-scoped fixture, shared with the core scenarios

CALLS_MODULE = "tests.compat.services.calls"
DELAY_S = 1.5  # services/calls.py DELAYED_SEND
CLOCK_SLACK_S = 0.005  # the ledger's wall-clock times are rounded to milliseconds
T = TypeVar("T")


@pytest.fixture(scope="module")
def calls_service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "calls", CALLS_MODULE) as svc:
        register(server.admin_url, svc.url)
        yield svc


@pytest.fixture
async def ingress(server: Server, calls_service: PythonService) -> AsyncIterator[Ingress]:
    async with Ingress(server.ingress_url) as ing:
        yield ing


async def wait_for_prefix(ledger: Ledger, tag: str, prefix: str, timeout_s: float = 20.0) -> str:
    """Poll the ledger until an event of `tag` starts with `prefix`; return the rest of it."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                for event in ledger.events(tag):
                    if event.startswith(prefix):
                        return event[len(prefix) :]
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise TimeoutError(f"{tag}: no {prefix!r}… within {timeout_s}s; saw {ledger.events(tag)}") from None


# --- timers --------------------------------------------------------------------------------


async def test_one_second_sleep_returns_after_at_least_one_second(ingress: Ingress) -> None:
    started = time.monotonic()
    resp = await ingress.call("Timers/sleep", 1000)
    elapsed = time.monotonic() - started
    assert (resp.status_code, resp.json()) == (200, 1000), resp.text
    assert elapsed >= 1.0, elapsed


async def test_sleeps_of_one_invocation_wake_in_deadline_order(ingress: Ingress) -> None:
    started = time.monotonic()
    long, short = await asyncio.gather(ingress.call("Timers/sleep", 900), ingress.call("Timers/sleep", 300))
    assert (long.json(), short.json()) == (900, 300)
    assert time.monotonic() - started >= 0.9


# --- awakeables ----------------------------------------------------------------------------


async def started_waiter(ing: Ingress, ledger: Ledger) -> tuple[str, str]:
    """Send Waiter/wait; return its invocation id and the awakeable id it published."""
    tag = new_tag()
    sent = await ing.send("Waiter/wait", tag)
    assert sent.status_code == 202, sent.body
    awakeable_id = await wait_for_prefix(ledger, tag, "awakeable ")
    assert awakeable_id.startswith("sign_1"), awakeable_id
    return sent.invocation_id, awakeable_id


async def test_awakeable_resolved_through_the_ingress(ingress: Ingress, workspace: Workspace) -> None:
    invocation_id, awakeable_id = await started_waiter(ingress, workspace.ledger)
    resp = await ingress.http.post(
        f"/restate/awakeables/{awakeable_id}/resolve",
        content=b'"yes"',
        headers={"content-type": "application/json"},
    )
    assert (resp.status_code, resp.content) == (202, b""), resp.text
    done = await ingress.attach(invocation_id)
    assert (done.status_code, done.json()) == (200, {"value": "yes"}), done.text


async def test_awakeable_rejected_through_the_ingress(ingress: Ingress, workspace: Workspace) -> None:
    invocation_id, awakeable_id = await started_waiter(ingress, workspace.ledger)
    resp = await ingress.http.post(
        f"/restate/awakeables/{awakeable_id}/reject",
        content=b"nope nope",
        headers={"content-type": "text/plain"},
    )
    assert resp.status_code == 202, resp.text
    done = await ingress.attach(invocation_id)
    assert done.json() == {"error": "nope nope", "code": 500}


async def test_awakeable_resolved_by_another_handler(ingress: Ingress, workspace: Workspace) -> None:
    invocation_id, awakeable_id = await started_waiter(ingress, workspace.ledger)
    resp = await ingress.call("Waiter/resolve", {"id": awakeable_id, "value": {"n": [1, 2]}})
    assert resp.status_code == 200, resp.text
    assert (await ingress.attach(invocation_id)).json() == {"value": {"n": [1, 2]}}


async def test_awakeable_rejected_by_another_handler(ingress: Ingress, workspace: Workspace) -> None:
    invocation_id, awakeable_id = await started_waiter(ingress, workspace.ledger)
    resp = await ingress.call("Waiter/reject", {"id": awakeable_id, "reason": "too late", "code": 410})
    assert resp.status_code == 200, resp.text
    assert (await ingress.attach(invocation_id)).json() == {"error": "too late", "code": 410}


async def test_resolving_a_completed_awakeable_is_accepted_and_changes_nothing(
    ingress: Ingress, workspace: Workspace
) -> None:
    invocation_id, awakeable_id = await started_waiter(ingress, workspace.ledger)
    path = f"/restate/awakeables/{awakeable_id}"
    json_hdr = {"content-type": "application/json"}
    assert (
        await ingress.http.post(f"{path}/resolve", content=b'"first"', headers=json_hdr)
    ).status_code == 202
    first = await ingress.attach(invocation_id)
    assert first.json() == {"value": "first"}
    again = await ingress.http.post(f"{path}/resolve", content=b'"second"', headers=json_hdr)
    assert (again.status_code, again.content) == (202, b"")
    rejected = await ingress.http.post(
        f"{path}/reject", content=b"late", headers={"content-type": "text/plain"}
    )
    assert rejected.status_code == 202
    from_handler = await ingress.call("Waiter/resolve", {"id": awakeable_id, "value": "third"})
    assert from_handler.status_code == 200, from_handler.text
    later = await ingress.output(invocation_id)
    assert (later.status_code, later.content) == (200, first.content)


async def test_malformed_awakeable_id_is_400(ingress: Ingress) -> None:
    resp = await ingress.http.post(
        "/restate/awakeables/sign_1bad/resolve", content=b'"x"', headers={"content-type": "application/json"}
    )
    assert_ingress_error(resp, 400, "bad awakeable id 'sign_1bad': id doesn't match the expected type")
    assert (await ingress.http.get("/restate/awakeables/sign_1bad/resolve")).status_code == 405


# --- calls ---------------------------------------------------------------------------------


async def test_call_send_and_delayed_send_from_a_handler(ingress: Ingress, workspace: Workspace) -> None:
    tag = new_tag()
    resp = await ingress.call("Caller/fanout", tag)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["echo"] == f"echo {tag}"
    sent_at = float(body["sent_at"])
    now_at = float(await wait_for_prefix(workspace.ledger, tag, "deliver now "))
    assert now_at >= sent_at
    await asyncio.sleep(max(0.0, sent_at + DELAY_S - 0.4 - time.time()))
    assert not any(e.startswith("deliver later") for e in workspace.ledger.events(tag)), "delivered early"
    later_at = float(await wait_for_prefix(workspace.ledger, tag, "deliver later ", timeout_s=10))
    assert later_at - sent_at >= DELAY_S - CLOCK_SLACK_S, (sent_at, later_at)
    await asyncio.sleep(0.3)  # room for a duplicate delivery to show up
    deliveries = [e.rsplit(" ", 1)[0] for e in workspace.ledger.events(tag)]
    assert deliveries == ["deliver now", "deliver later"]


async def test_handler_attaches_to_an_invocation_sent_from_the_ingress(ingress: Ingress) -> None:
    sent = await ingress.send("Callee/slow_echo", {"msg": "hi", "ms": 500})
    resp = await ingress.call("Caller/attach_to", sent.invocation_id)
    assert (resp.status_code, resp.json()) == (200, "slow echo hi"), resp.text
    done = await ingress.call("Caller/attach_to", sent.invocation_id)  # already completed
    assert (done.status_code, done.json()) == (200, "slow echo hi"), done.text


async def test_handler_attaches_to_an_invocation_it_sent(ingress: Ingress) -> None:
    resp = await ingress.call("Caller/send_then_attach", "yo")
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["output"] == "slow echo yo"
    assert (await ingress.output(body["id"])).json() == "slow echo yo"


# --- crash recovery (kills the module's server: keep last) ----------------------------------


async def test_sleep_interrupted_by_server_kill_completes_with_each_step_run_once(
    server: Server, calls_service: PythonService, workspace: Workspace
) -> None:
    tag = new_tag()
    started = time.monotonic()
    async with Ingress(server.ingress_url) as ing:
        sent = await ing.send("Timers/steps", {"tag": tag, "ms": 2000})
        await workspace.ledger.wait_for(tag, "before-acked")
    server.kill()
    server.start()
    async with Ingress(server.ingress_url) as ing:
        resp = await ing.attach(sent.invocation_id)
    assert (resp.status_code, resp.json()) == (200, "slept 2000"), resp.text
    assert time.monotonic() - started >= 2.0
    seen = workspace.ledger.events(tag)
    assert (seen.count("before"), seen.count("after")) == (1, 1), seen


# --- scale (Perdure only, opt-in) -----------------------------------------------------------

SLOW_ENV = "PERDURE_SLOW_TESTS"
PENDING_SLEEPS = 10_000
PENDING_SLEEP_MS = 20_000
SEND_CONCURRENCY = 64


def rss_kib(pid: int) -> int:
    """Resident set size of a process from /proc, in KiB."""
    for line in open(f"/proc/{pid}/status").read().splitlines():  # noqa: SIM115
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU time consumed so far by a process, in seconds."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get(SLOW_ENV) != "1", reason=f"scale check; set {SLOW_ENV}=1")
async def test_ten_thousand_pending_sleeps_keep_memory_flat_and_fire_after_restart(
    tmp_path_factory: pytest.TempPathFactory, record_property: Callable[[str, object], None]
) -> None:
    root = tmp_path_factory.mktemp("pending-sleeps")
    ws = Workspace(root)
    ws.gates.mkdir()
    with (
        running_server("perdure", tmp_path_factory) as srv,
        ws.python_service("rr_app", "rr", CALLS_MODULE) as svc,
    ):
        register(srv.admin_url, svc.url)
        rss_start = rss_kib(srv.pid)
        ids = await send_sleeps(srv.ingress_url)
        rss_loaded = rss_kib(srv.pid)
        cpu_before = cpu_s(srv.pid)
        await asyncio.sleep(3.0)
        idle_cpu = (cpu_s(srv.pid) - cpu_before) / 3.0
        srv.kill()
        srv.start()
        rss_restarted = rss_kib(srv.pid)
        record_property("rss_kib", {"start": rss_start, "loaded": rss_loaded, "restarted": rss_restarted})
        record_property("idle_cpu_fraction", idle_cpu)
        print(f"RSS KiB {rss_start} -> {rss_loaded} -> restarted {rss_restarted}; idle CPU {idle_cpu:.2%}")
        assert idle_cpu < 0.05, idle_cpu
        assert rss_restarted < rss_start + 64 * 1024, (rss_start, rss_restarted)  # timers not all in memory
        async with Ingress(srv.ingress_url, timeout_s=120) as ing:
            async with asyncio.timeout(PENDING_SLEEP_MS / 1000 + 120):
                outputs = await gather_bounded([ing.attach(i) for i in ids])
        assert {r.status_code for r in outputs} == {200}
        assert {r.json() for r in outputs} == {PENDING_SLEEP_MS}


async def send_sleeps(ingress_url: str) -> list[str]:
    """Send PENDING_SLEEPS sleeps to RrTimers (request-response: each one suspends)."""
    async with Ingress(ingress_url) as ing:
        sent = await gather_bounded(
            [ing.send("RrTimers/sleep", PENDING_SLEEP_MS) for _ in range(PENDING_SLEEPS)]
        )
    assert {s.status_code for s in sent} == {202}
    return [s.invocation_id for s in sent]


async def gather_bounded(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Await every coroutine with at most SEND_CONCURRENCY running at once, results in order."""
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(coro: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))
