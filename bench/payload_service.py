"""Services for `bench.payloads`: an echo through one `ctx.run` (big inputs and outputs), a
handler with N journaled steps, and an object that stores a big state value."""

from __future__ import annotations

import restate

echo = restate.Service("Echo")


@echo.handler()
async def run(ctx: restate.Context, data: str) -> str:
    return await ctx.run("echo", lambda: data)


steps = restate.Service("Steps")


@steps.handler()
async def many(ctx: restate.Context, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.run(f"step{i}", lambda i=i: i)  # type: ignore[misc]
    return total


blob = restate.VirtualObject("Blob")


@blob.handler()
async def put(ctx: restate.ObjectContext, data: str) -> int:
    ctx.set("data", data)
    return len(data)


@blob.handler()
async def size(ctx: restate.ObjectContext) -> int:
    data = await ctx.get("data", type_hint=str)
    return len(data or "")


app = restate.app([echo, steps, blob])
