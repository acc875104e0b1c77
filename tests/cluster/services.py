"""Official Python SDK (restate-sdk) services for the cluster tests: a counter object whose count
must end exact however often attempts are cut short, and a sleeper whose timer must fire on
whichever node owns its partition when it is due, and a ticker a schedule invokes."""

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


chain = restate.VirtualObject("ClusterChain")


@chain.handler()
async def hop(ctx: restate.ObjectContext, path: list[str]) -> list[str]:
    """Counts a visit of this key (one journaled step), then calls the next key of `path`: an
    object call whose callee (and whose result's way back) may be on another node."""
    visits = await ctx.get("visits", type_hint=int) or 0
    await ctx.run("step", lambda: None)
    ctx.set("visits", visits + 1)
    if not path:
        return [ctx.key()]
    rest: list[str] = await ctx.object_call(hop, key=path[0], arg=path[1:])
    return [ctx.key(), *rest]


@chain.handler(kind="shared")
async def visits(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("visits", type_hint=int) or 0


notes = restate.VirtualObject("ClusterNotes")


@notes.handler()
async def note(ctx: restate.ObjectContext, item: str) -> None:
    items = await ctx.get("items", type_hint=list[str]) or []
    ctx.set("items", [*items, item])


@notes.handler(kind="shared")
async def read(ctx: restate.ObjectSharedContext) -> list[str]:
    return await ctx.get("items", type_hint=list[str]) or []


fan = restate.VirtualObject("ClusterFan")


@fan.handler()
async def spread(ctx: restate.ObjectContext, targets: list[str]) -> int:
    """For each target key: a call to its counter, a send to it, and numbered sends to its notes
    (which must arrive in the order sent)."""
    total = 0
    for key in targets:
        total += await ctx.object_call(add, key=key, arg=1)
        ctx.object_send(add, key=key, arg=1)
        for i in range(NOTES):
            ctx.object_send(note, key=key, arg=f"{ctx.key()}-{i}")
    return total


NOTES = 10
waiter = restate.VirtualObject("ClusterWaiter")


@waiter.handler()
async def wait(ctx: restate.ObjectContext, resolver_key: str) -> str:
    """An awakeable resolved by a handler of another key (another node's)."""
    name, promise = ctx.awakeable(type_hint=str)
    ctx.object_send(resolve, key=resolver_key, arg=name)
    return await promise


@waiter.handler()
async def attach_to(ctx: restate.ObjectContext, invocation_id: str) -> str:
    result: str = await ctx.attach_invocation(invocation_id, type_hint=str)
    return result


@waiter.handler()
async def cancel(ctx: restate.ObjectContext, invocation_id: str) -> None:
    ctx.cancel_invocation(invocation_id)


resolver = restate.VirtualObject("ClusterResolver")


@resolver.handler()
async def resolve(ctx: restate.ObjectContext, awakeable_id: str) -> None:
    ctx.resolve_awakeable(awakeable_id, f"woken by {ctx.key()}")


ticker = restate.Service("ClusterTicker")


@ticker.handler()
async def tick(ctx: restate.Context, body: dict[str, str]) -> str:
    """A schedule's target: each tick is one invocation (its idempotency key names the tick)."""
    await ctx.run("tock", lambda: None)
    return "ticked"


app = restate.app(services=[counter, sleeper, relay, chain, notes, fan, waiter, resolver, ticker])
