"""Services for `bench.keys` and `bench.hotkey` (official Python SDK).

`Counter/<key>/add` adds to a per-key count in the object's state (many keys, each with state).
`Hot/<key>/hold` holds the key's lock until an awakeable (its id kept in state) is resolved;
`Hot/<key>/add` checks it runs in sequence order (n must follow the last n seen) and counts what
did not; `Hot/<key>/progress` (shared, never queued) reads both.
"""

from __future__ import annotations

import restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


hot = restate.VirtualObject("Hot")


@hot.handler()
async def hold(ctx: restate.ObjectContext) -> None:
    awakeable_id, done = ctx.awakeable(type_hint=str)
    ctx.set("awakeable", awakeable_id)
    await done


@hot.handler(name="add")
async def hot_add(ctx: restate.ObjectContext, n: int) -> int:
    last = await ctx.get("last", type_hint=int) or 0
    if n != last + 1:
        ctx.set("out_of_order", (await ctx.get("out_of_order", type_hint=int) or 0) + 1)
    ctx.set("last", n)
    return n


@hot.handler(kind="shared")
async def progress(ctx: restate.ObjectSharedContext) -> dict[str, int]:
    last = await ctx.get("last", type_hint=int) or 0
    return {"last": last, "out_of_order": await ctx.get("out_of_order", type_hint=int) or 0}


app = restate.app([counter, hot])
