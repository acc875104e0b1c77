"""A counter virtual object: exclusive `add` (one at a time per key), shared `get`, `reset`.
Serve with `hypercorn examples.counter:app --bind 127.0.0.1:9080`."""

from __future__ import annotations

from datetime import timedelta

import perdure as restate

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    total = (await ctx.get("count") or 0) + delta
    ctx.set("count", total)
    if total >= 100:
        # Reset later, durably: the timer survives restarts of this process.
        ctx.object_send(reset, ctx.key(), None, send_delay=timedelta(seconds=10))
    return total


@counter.handler()
async def reset(ctx: restate.ObjectContext) -> None:
    ctx.clear_all()


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count") or 0


app = restate.app(services=[counter])

if __name__ == "__main__":
    from examples.serve import serve

    serve(app)
