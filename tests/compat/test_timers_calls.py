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
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.compat.services.ledger import Ledger
from tests.compat.workspace import Workspace, assert_ingress_error, new_tag
from tests.support import Ingress, PythonService, Server, query, register
from tests.support.fixtures import running_server

CALLS_MODULE = "tests.compat.services.calls"
DELAY_S = 1.5  # services/calls.py DELAYED_SEND
CLOCK_SLACK_S = 0.005  # the ledger's wall-clock times are rounded to milliseconds
T = TypeVar("T")


@pytest.fixture(scope="module")
def calls_service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    """The bidi endpoint and the request-response one (RrTimers, RrWaiter), both registered."""
    with (
        workspace.python_service("app", "calls", CALLS_MODULE) as svc,
        workspace.python_service("rr_app", "calls-rr", CALLS_MODULE) as rr_svc,
    ):
        register(server.admin_url, svc.url)
        register(server.admin_url, rr_svc.url)
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


async def started_waiter(ing: Ingress, ledger: Ledger, service: str = "Waiter") -> tuple[str, str]:
    """Send {service}/wait; return its invocation id and the awakeable id it published."""
    tag = new_tag()
    sent = await ing.send(f"{service}/wait", tag)
    assert sent.status_code == 202, sent.body
    awakeable_id = await wait_for_prefix(ledger, tag, "awakeable ")
    assert awakeable_id.startswith("sign_1"), awakeable_id
    return sent.invocation_id, awakeable_id


@pytest.mark.parametrize("service", ["Waiter", "RrWaiter"])
async def test_awakeable_resolved_through_the_ingress(
    ingress: Ingress, workspace: Workspace, service: str
) -> None:
    invocation_id, awakeable_id = await started_waiter(ingress, workspace.ledger, service)
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


async def test_calls_from_a_handler_carry_idempotency_key_and_headers(
    ingress: Ingress, workspace: Workspace
) -> None:
    tag = new_tag()
    resp = await ingress.call("Caller/call_twice", tag)
    assert resp.status_code == 200, resp.text
    first, second = resp.json()
    assert first == second  # the second call with the same idempotency key got the first's result
    assert first["x-tag"] == tag
    assert workspace.ledger.events(tag) == ["counted"]


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
# All sleeps wake at one Unix time this far after the first send: sending 10,000 takes Perdure
# ~80 s on 2 cores, and every sleep must still be pending when the server is restarted.
WAKE_AFTER_S = 120.0
FIRE_BUDGET_S = 120.0
SEND_CONCURRENCY = 64
IDLE_WINDOW_S = 3.0
IDLE_CPU_MAX = 0.05  # fraction of one core
RSS_GROWTH_KIB_MAX = 64 * 1024  # pending sleeps live in storage, not in memory
RR_TIMERS = "RrTimers"


def rss_kib(pid: int) -> int:
    """Resident set size of a process from /proc, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_s(pid: int) -> float:
    """User plus system CPU time consumed so far by a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def idle_cpu(pid: int) -> float:
    """CPU used by `pid` over IDLE_WINDOW_S, as a fraction of one core."""
    before = cpu_s(pid)
    await asyncio.sleep(IDLE_WINDOW_S)
    return (cpu_s(pid) - before) / IDLE_WINDOW_S


def status_counts(admin_url: str) -> dict[str, int]:
    """How many RrTimers invocations are in each status (sys_invocation); {} if the query timed out.

    A timeout is tolerated (and printed): while 10,000 timers fire at once the admin API may be
    slow to answer, which is not what this scale check is about.
    """
    try:
        rows = query(
            admin_url,
            "SELECT status, COUNT(*) AS n FROM sys_invocation "
            f"WHERE target_service_name = '{RR_TIMERS}' GROUP BY status",
        )
    except httpx.TimeoutException:
        print(f"{time.strftime('%X')} admin query timed out")
        return {}
    return {str(r["status"]): int(r["n"]) for r in rows}


async def wait_counts(admin_url: str, status: str, timeout_s: float) -> dict[str, int]:
    """Poll until all PENDING_SLEEPS invocations are in `status`; return the last counts seen."""
    counts: dict[str, int] = {}
    try:
        async with asyncio.timeout(timeout_s):
            while (counts := await asyncio.to_thread(status_counts, admin_url)).get(status) != PENDING_SLEEPS:
                await asyncio.sleep(1.0)
    except TimeoutError:
        raise AssertionError(f"not all {PENDING_SLEEPS} {status} after {timeout_s}s: {counts}") from None
    return counts


@pytest.mark.slow
@pytest.mark.timeout(WAKE_AFTER_S + FIRE_BUDGET_S + 120)
@pytest.mark.skipif(os.environ.get(SLOW_ENV) != "1", reason=f"scale check; set {SLOW_ENV}=1")
async def test_ten_thousand_pending_sleeps_keep_memory_flat_and_fire_after_restart(
    tmp_path_factory: pytest.TempPathFactory, record_property: Callable[[str, object], None]
) -> None:
    ws = Workspace(tmp_path_factory.mktemp("pending-sleeps"))
    ws.gates.mkdir()
    with (
        running_server("perdure", tmp_path_factory) as srv,
        ws.python_service("rr_app", "rr", CALLS_MODULE) as svc,
    ):
        register(srv.admin_url, svc.url)
        rss = {"start": rss_kib(srv.pid)}
        wake_at_s = time.time() + WAKE_AFTER_S
        ids = await send_sleeps(srv.ingress_url, wake_at_s)
        sent_in_s = time.time() - (wake_at_s - WAKE_AFTER_S)
        await wait_counts(srv.admin_url, "suspended", timeout_s=max(1.0, wake_at_s - time.time()))
        rss["pending"] = rss_kib(srv.pid)
        cpu = {"pending": await idle_cpu(srv.pid)}
        srv.kill()
        srv.start()
        cpu["restarted"] = await idle_cpu(srv.pid)
        rss["restarted"] = rss_kib(srv.pid)
        assert time.time() < wake_at_s, "the sleeps fired before the restart: sending was too slow"
        record_property("rss_kib", rss)
        record_property("idle_cpu_fraction", cpu)
        record_property("sent_in_s", sent_in_s)
        print(f"sent {PENDING_SLEEPS} in {sent_in_s:.1f}s; RSS KiB {rss}; idle CPU {cpu}")
        await wait_counts(srv.admin_url, "completed", timeout_s=wake_at_s - time.time() + FIRE_BUDGET_S)
        rss["fired"] = rss_kib(srv.pid)
        print(f"RSS KiB after firing {rss['fired']}")
        async with Ingress(srv.ingress_url) as ing:
            outputs = await gather_bounded([ing.output(i) for i in ids])
    assert {(r.status_code, r.json()) for r in outputs} == {(200, wake_at_s)}
    assert max(cpu.values()) < IDLE_CPU_MAX, cpu
    assert rss["pending"] - rss["start"] < RSS_GROWTH_KIB_MAX, rss
    assert rss["restarted"] - rss["start"] < RSS_GROWTH_KIB_MAX, rss


async def send_sleeps(ingress_url: str, wake_at_s: float) -> list[str]:
    """Send PENDING_SLEEPS sleeps to RrTimers (request-response: each one suspends)."""
    async with Ingress(ingress_url) as ing:
        target = f"{RR_TIMERS}/sleep_until"
        sent = await gather_bounded([ing.send(target, wake_at_s) for _ in range(PENDING_SLEEPS)])
    assert {s.status_code for s in sent} == {202}
    return [s.invocation_id for s in sent]


async def gather_bounded(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Await every coroutine with at most SEND_CONCURRENCY running at once, results in order."""
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(coro: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))
