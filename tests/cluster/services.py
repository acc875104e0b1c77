"""Official Python SDK (restate-sdk) services for the cluster tests: a counter object whose count
must end exact however often attempts are cut short, and a sleeper whose timer must fire on
whichever node owns its partition when it is due."""

from __future__ import annotations

from datetime import timedelta

import restate

counter = restate.VirtualObject("ClusterCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    current = await ctx.get("count", type_hint=int) or 0
    await ctx.run("step", lambda: None)
    ctx.set("count", current + delta)
    return current + delta


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


sleeper = restate.Service("ClusterSleeper")


@sleeper.handler()
async def nap(ctx: restate.Context, ms: int) -> str:
    await ctx.run("before", lambda: None)
    await ctx.sleep(timedelta(milliseconds=ms))
    await ctx.run("after", lambda: None)
    return "rested"


relay = restate.Service("ClusterRelay")


@relay.handler()
async def call_nap(ctx: restate.Context, ms: int) -> str:
    """A service calling a service: the callee stays in the caller's partition."""
    result: str = await ctx.service_call(nap, arg=ms)
    return result


app = restate.app(services=[counter, sleeper, relay])
