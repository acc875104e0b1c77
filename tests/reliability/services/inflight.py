"""Services for the restart-with-work-in-flight test and `bench.inflight`: the starvation
scenario's waiters (`Sleeper`, `Parked`, `Greeter`) and `Runner.until`, an invocation whose
attempt is busy inside one `ctx.run` until a given Unix time (running, not suspended, when the
server is killed)."""

from __future__ import annotations

import asyncio
import time

import restate

from tests.reliability.services.waiting import greeter, parked, sleeper

runner = restate.Service("Runner")


async def _busy_until(t_s: float) -> float:
    await asyncio.sleep(max(0.0, t_s - time.time()))
    return time.time()


@runner.handler()
async def until(ctx: restate.Context, t_s: float) -> float:
    async def busy() -> float:
        return await _busy_until(t_s)

    return await ctx.run("busy", busy)


app = restate.app([sleeper, parked, greeter, runner])
