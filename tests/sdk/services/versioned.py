"""A handler whose code changes between two versions of the same deployment (SCENARIO_VERSION
v1/v2 swaps the order of two steps), to prove replay detects the change instead of corrupting."""

from __future__ import annotations

import os
from datetime import timedelta

from tests.compat.services.ledger import record
from tests.sdk.services.sdk import restate

changing = restate.Service("Changing")
VERSION = os.environ.get("SCENARIO_VERSION", "v1")


@changing.handler()
async def ordered(ctx: restate.Context, tag: str) -> str:
    first, second = ("alpha", "beta") if VERSION == "v1" else ("beta", "alpha")
    await ctx.run(first, lambda: record(tag, f"{VERSION} {first}"))
    await ctx.sleep(timedelta(milliseconds=1500))
    await ctx.run(second, lambda: record(tag, f"{VERSION} {second}"))
    return VERSION


sequencer = restate.Service("Sequencer")


@sequencer.handler()
async def sequence(ctx: restate.Context, tag: str) -> list[str]:
    a = await ctx.run("a", lambda: "a")
    await ctx.sleep(timedelta(milliseconds=200))
    b = await ctx.run("b", lambda: "b")
    return [a, b]


app = restate.app(services=[changing])
rr_app = restate.app(services=[sequencer], protocol="request_response")
