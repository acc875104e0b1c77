"""No amount of waiting invocations starves new ones (issue 16, liveness under waiting load).

Two thousand invocations that only wait (sleeps, awakeables) plus calls to an endpoint that
answers late are more than the server's 1,000 attempts in flight; a new call must still be
answered, before and after a SIGKILL, and every waiting invocation must still be there and
finish when its wait ends. The bench (`python -m bench.starvation`) runs the same at 10,000
beside the real Restate server.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from tests.support import PythonService, make_server
from tests.support.client import Ingress, query, register
from tests.support.fixtures import running_server

T = TypeVar("T")

MODULE = "tests.reliability.services.waiting"
SLEEPERS = 1_000
PARKED = 1_000
SLOW = 100
SEND_CONCURRENCY = 64
ANSWER_BOUND_S = 30.0  # today's fix answers in well under a second; before it, minutes
WAKE_AFTER_S = 75.0
PARKED_COUNT = "SELECT COUNT(*) AS n FROM state WHERE service_name = 'Parked'"
PARKED_IDS = "SELECT value_utf8 FROM state WHERE service_name = 'Parked'"
STATUS_COUNT = (
    "SELECT COUNT(*) AS n FROM sys_invocation WHERE target_service_name = '{service}'"
    " AND status {op} 'completed'"
)


async def bounded(coros: list[Coroutine[Any, Any, T]]) -> list[T]:
    gate = asyncio.Semaphore(SEND_CONCURRENCY)

    async def one(c: Coroutine[Any, Any, T]) -> T:
        async with gate:
            return await c

    return await asyncio.gather(*(one(c) for c in coros))


async def greet_within(ingress_url: str, bound_s: float) -> float:
    """Call Greeter/greet, retrying connection errors (a restarting server); seconds taken."""
    t0 = time.monotonic()
    async with Ingress(ingress_url, timeout_s=bound_s) as ing:
        while True:
            try:
                resp = await ing.call("Greeter/greet", "Ann")
                break
            except httpx.TransportError:
                if time.monotonic() - t0 > bound_s:
                    raise
                await asyncio.sleep(0.1)
    assert resp.status_code == 200, resp.text
    assert resp.json() == "Hello, Ann!"
    return time.monotonic() - t0


def count(admin_url: str, sql: str) -> int:
    rows = query(admin_url, sql)
    return int(rows[0]["n"]) if rows else 0


async def wait_until(check: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")
        await asyncio.sleep(0.5)


@pytest.mark.timeout(300)
async def test_new_calls_are_answered_behind_thousands_of_waiting_invocations(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    with (
        running_server("perdure", tmp_path_factory) as srv,
        PythonService(MODULE, "app", log_dir=tmp_path_factory.mktemp("waiting")) as svc,
    ):
        register(srv.admin_url, svc.url)
        wake_at_s = time.time() + WAKE_AFTER_S
        async with Ingress(srv.ingress_url) as ing:
            sent = await bounded(
                [ing.send("Sleeper/until", wake_at_s) for _ in range(SLEEPERS)]
                + [ing.send(f"Parked/p{i}/wait") for i in range(PARKED)]
                + [ing.send("Slow/echo", f"m{i}") for i in range(SLOW)]
            )
        assert {s.status_code for s in sent} == {202}
        before_s = await greet_within(srv.ingress_url, ANSWER_BOUND_S)

        # Every waiter reached its wait (the awakeable ids are in the objects' state).
        await wait_until(
            lambda: count(srv.admin_url, PARKED_COUNT) == PARKED,
            ANSWER_BOUND_S * 2,
            "every Parked object to store its awakeable id",
        )
        srv.kill()
        t_restart = time.monotonic()
        srv.start()
        healthy_s = time.monotonic() - t_restart
        after_s = await greet_within(srv.ingress_url, ANSWER_BOUND_S)
        print(f"greet: {before_s:.2f}s before, {after_s:.2f}s after a restart (healthy in {healthy_s:.2f}s)")

        pending = STATUS_COUNT.format(service="{}", op="<>")
        if time.time() < wake_at_s - 5:  # a very slow machine may get here after the wake-up
            assert count(srv.admin_url, pending.format("Sleeper")) == SLEEPERS
        assert count(srv.admin_url, pending.format("Parked")) == PARKED

        ids = [r["value_utf8"] for r in query(srv.admin_url, PARKED_IDS)]
        async with Ingress(srv.ingress_url) as ing:
            resolved = await bounded(
                [ing.http.post(f"/restate/awakeables/{i.strip(chr(34))}/resolve", json="done") for i in ids]
            )
        assert {r.status_code for r in resolved} <= {200, 202}, {r.status_code for r in resolved}
        done = STATUS_COUNT.format(service="{}", op="=")
        await wait_until(lambda: count(srv.admin_url, done.format("Parked")) == PARKED, 60, "awakeables")
        await wait_until(
            lambda: count(srv.admin_url, done.format("Sleeper")) == SLEEPERS,
            max(0.0, wake_at_s - time.time()) + 60,
            "every sleeper to wake",
        )
        await wait_until(lambda: count(srv.admin_url, done.format("Slow")) == SLOW, 120, "the slow calls")


INFLIGHT_MODULE = "tests.reliability.services.inflight"
DUE_SLEEPERS = 2_000
DUE_PARKED = 1_000
DUE_RUNNERS = 200
DUE_MARGIN_S = 20.0  # beyond the sends' own time: the wake-up comes after every send is stored
# Fewer slots than the default 1,000, so the backlog is ten times the slots (as 10,000 in flight
# are for the default) and the other attempts' share (25%: 50 slots) is small beside it.
SLOTS = 200
SLOTS_ENV = {"RESTATE_WORKER__INVOKER__CONCURRENT_INVOCATIONS_LIMIT": str(SLOTS)}


@pytest.mark.timeout(420)
async def test_a_new_call_goes_ahead_of_a_restart_backlog(tmp_path_factory: pytest.TempPathFactory) -> None:
    """SIGKILL with thousands of sleepers due, awakeable waiters and attempts busy in a `ctx.run`:
    after the restart a new call is answered ahead of that backlog, while at least three quarters
    of it is still to do (before the fix every recovered attempt went to the service at once, the
    new call among them, and it was answered after all 2,200 were done), and every one of them
    completes; none completes before its time."""
    total = DUE_SLEEPERS + DUE_RUNNERS
    data_dir = tmp_path_factory.mktemp("perdure-server") / "data"
    with (
        make_server("perdure", data_dir, env=SLOTS_ENV) as srv,
        PythonService(INFLIGHT_MODULE, "app", log_dir=tmp_path_factory.mktemp("inflight")) as svc,
    ):
        register(srv.admin_url, svc.url)
        t0 = time.monotonic()
        async with Ingress(srv.ingress_url) as ing:
            sent = await bounded([ing.send(f"Parked/p{i}/wait") for i in range(DUE_PARKED)])
            per_send_s = (time.monotonic() - t0) / DUE_PARKED
            wake_at_s = time.time() + DUE_MARGIN_S + 2 * per_send_s * total
            sent += await bounded(
                [ing.send("Sleeper/until", wake_at_s) for _ in range(DUE_SLEEPERS)]
                + [ing.send("Runner/until", wake_at_s) for _ in range(DUE_RUNNERS)]
            )
        assert {s.status_code for s in sent} == {202}
        await wait_until(
            lambda: count(srv.admin_url, PARKED_COUNT) == DUE_PARKED,
            ANSWER_BOUND_S * 4,
            "every Parked object to store its awakeable id",
        )
        done = STATUS_COUNT.format(service="{}", op="=")

        def finished() -> int:
            return count(srv.admin_url, done.format("Sleeper")) + count(srv.admin_url, done.format("Runner"))

        assert time.time() < wake_at_s - 2, "the sends ran past the wake-up: raise DUE_MARGIN_S"
        assert finished() == 0  # nobody woke early
        srv.kill()
        await asyncio.sleep(max(0.0, wake_at_s + 1 - time.time()))  # every sleeper due at the restart
        srv.start()
        after_s = await greet_within(srv.ingress_url, ANSWER_BOUND_S)
        finished_then = finished()
        print(f"greet {after_s:.2f}s after the restart, {finished_then} of {total} done by then")
        # The new call went ahead of the backlog: most of it was still to do when it was answered.
        assert finished_then < total // 4, f"{finished_then} of {total} finished before the new call"

        await wait_until(lambda: finished() == total, 180, "every sleeper and runner to finish")
        ids = [r["value_utf8"] for r in query(srv.admin_url, PARKED_IDS)]
        async with Ingress(srv.ingress_url) as ing:
            resolved = await bounded(
                [ing.http.post(f"/restate/awakeables/{i.strip(chr(34))}/resolve", json="done") for i in ids]
            )
        assert {r.status_code for r in resolved} <= {200, 202}, {r.status_code for r in resolved}
        await wait_until(
            lambda: count(srv.admin_url, done.format("Parked")) == DUE_PARKED, 180, "the awakeable waiters"
        )
