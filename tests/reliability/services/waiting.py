"""Official Python SDK services for the starvation scenario: many invocations that only wait.

`Sleeper.until` sleeps until a given Unix time, `Parked.wait` (object, keyed by tag) waits on an
awakeable whose id it keeps in its state, `Greeter.greet` is the new call that must not starve.
`app` also serves `Slow`: its invocations get their response headers only after SLOW_ANSWER_S
(an endpoint that accepts connections but answers late).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import restate

SLOW_ANSWER_S = 20.0


def wall_clock() -> float:
    return time.time()


sleeper = restate.Service("Sleeper")


@sleeper.handler()
async def until(ctx: restate.Context, wake_at_s: float) -> float:
    now_s = await ctx.run("now", wall_clock)
    await ctx.sleep(timedelta(seconds=max(0.0, wake_at_s - now_s)))
    return wake_at_s


parked = restate.VirtualObject("Parked")


@parked.handler()
async def wait(ctx: restate.ObjectContext) -> Any:
    awakeable_id, result = ctx.awakeable(type_hint=object)
    ctx.set("awakeable", awakeable_id)
    return await result


greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return await ctx.run("greeting", lambda: f"Hello, {name}!")


slow = restate.Service("Slow")


@slow.handler()
async def echo(ctx: restate.Context, msg: str) -> str:
    return msg


_app = restate.app([sleeper, parked, greeter, slow])


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The SDK app, but invocations of `Slow` are answered only after SLOW_ANSWER_S."""
    if scope.get("type") == "http" and str(scope.get("path", "")).startswith("/invoke/Slow/"):
        await asyncio.sleep(SLOW_ANSWER_S)
    await _app(scope, receive, send)
