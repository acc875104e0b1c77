"""Greeter with one `ctx.run`, written against restate's API; the SDK comes from SDK_UNDER_TEST."""

from __future__ import annotations

from tests.sdk.services.sdk import restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return await ctx.run("build", lambda: f"Hello, {name}!")


app = restate.app(services=[greeter])
