"""The runtime's lanes: a request goes into the next batch however many due timers wait, and
those timers drain in bounded shares of the following batches (none lost)."""

from __future__ import annotations

import asyncio

from perdure.protocol.ids import InvocationId
from perdure.server.processor.commands import TIMER_SLEEP, ReplaceState, Timer, TimerFired
from perdure.server.runtime import BATCH_COMMANDS_MAX, TIMER_FIRES_PER_BATCH
from perdure.testing.harness import Harness

DUE = 2 * BATCH_COMMANDS_MAX  # more than two full batches of firings


async def settle(h: Harness) -> None:
    while not h.runtime.idle():
        await asyncio.sleep(0.01)


async def test_a_request_goes_ahead_of_thousands_of_due_timers() -> None:
    async with Harness() as h:
        rt = h.runtime
        await settle(h)
        before = rt.batches
        now_ms = h.clock.now_ms() - 60_000
        for i in range(DUE):  # timers of invocations that ended long ago: each firing a no-op
            raw = InvocationId.generate(i).raw
            rt.submit_fired(TimerFired(Timer(now_ms, raw, TIMER_SLEEP, 1)))
        reply = await rt.call(lambda token: ReplaceState("Nobody", "k", (), token))
        assert reply.token != 0
        assert rt.batches - before == 1, "the request waited behind the firings"
        # The first batch took one share of them (the next may be applied by now).
        assert rt.backlog()[2] >= DUE - 2 * TIMER_FIRES_PER_BATCH
        await settle(h)
        assert rt.backlog() == (0, 0, 0)
        assert rt.batches - before >= DUE // TIMER_FIRES_PER_BATCH
        assert rt.timer_late_max_ms >= 60_000
