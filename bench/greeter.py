"""The benchmarked service: official Python SDK (restate-sdk 1.3.0) Greeter with one `ctx.run`."""

from __future__ import annotations

import restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    """One journaled step, so every invocation costs the server an input, a run and an output."""
    return await ctx.run("greeting", lambda: f"Hello, {name}!")


app = restate.app([greeter])
