"""Services for `bench.payloads` and `bench.replay`: an echo through one `ctx.run` (big inputs and
outputs), a handler with N journaled steps, an object that stores a big state value (or bumps a
small one), and a handler
whose first attempt fails after N steps so that the retry replays them all."""

from __future__ import annotations

import time

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
        total += await ctx.run(f"step{i}", lambda i=i: i)
    return total


blob = restate.VirtualObject("Blob")


@blob.handler()
async def put(ctx: restate.ObjectContext, data: str) -> int:
    ctx.set("data", data)
    return len(data)


@blob.handler()
async def bump(ctx: restate.ObjectContext) -> int:
    """A small state value read and written (bench.payloads: on the keys beside a big one)."""
    n = (await ctx.get("n", type_hint=int) or 0) + 1
    ctx.set("n", n)
    return n


@blob.handler()
async def size(ctx: restate.ObjectContext) -> int:
    data = await ctx.get("data", type_hint=str)
    return len(data or "")


replay = restate.Service("Replay")
_failed_at: dict[str, float] = {}  # invocation id -> when its first attempt failed (this process)


@replay.handler()
async def steps_then_retry(ctx: restate.Context, n: int) -> dict[str, float]:
    """N steps; the first attempt then fails (retryable), the retry replays the N from the journal."""
    for i in range(n):
        await ctx.run(f"step{i}", lambda i=i: i)
    iid = ctx.request().id
    if iid not in _failed_at:
        _failed_at[iid] = time.time()
        raise RuntimeError("first attempt fails after its steps")
    return {"failed_at": _failed_at[iid], "replayed_at": time.time()}


app = restate.app([echo, steps, blob, replay])
