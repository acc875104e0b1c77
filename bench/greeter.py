"""The benchmarked services (official Python SDK, restate-sdk 1.3.0), one per scenario of `bench.run`:
`Greeter/greet` (one `ctx.run`), `Steps/run` (three journaled steps) and `Counter/{key}/add` (a
virtual object reading and writing its state)."""

from __future__ import annotations

import restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    """One journaled step, so every invocation costs the server an input, a run and an output."""
    return await ctx.run("greeting", lambda: f"Hello, {name}!")


steps = restate.Service("Steps")


@steps.handler()
async def run(ctx: restate.Context, name: str) -> str:
    """Three journaled steps in a row: three runs proposed and acknowledged, one after another."""
    a = await ctx.run("one", lambda: f"{name}-1")
    b = await ctx.run("two", lambda: f"{a}-2")
    return await ctx.run("three", lambda: f"{b}-3")


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    """Exclusive handler: the key's lock, a state read and a state write."""
    count: int | None = await ctx.get("count", type_hint=int)
    value = (count or 0) + delta
    ctx.set("count", value)
    return value


app = restate.app([greeter, steps, counter])
