"""Official Python SDK (restate-sdk 1.3.0) services for the core compatibility scenarios.

`app` serves them over bidi streaming; `rr_app` serves the same handlers under names prefixed
with "Rr" in request-response mode. Side effects go to the ledger (see ledger.py).
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import restate
from restate.retry_policy import InvocationRetryPolicy

from tests.compat.services.ledger import LEDGER_ENV, events, gate_path, label, record

GATE_WAIT_S_MAX = 60.0
ATTEMPTS_BEFORE_SUCCESS = 3


def make_services(prefix: str = "") -> list[Any]:
    """Greeter, Flaky, Terminal, Steps (gated and sleepy steps) and a Counter object."""
    greeter = restate.Service(f"{prefix}Greeter")

    @greeter.handler()
    async def greet(ctx: restate.Context, name: str) -> str:
        return await ctx.run("greeting", lambda: f"Hello, {name}!")

    # The request-response copy is the introspection suites' "stuck" invocation: it retries
    # every 2 s, so it is almost always `backing-off` when a test looks (the default policy
    # retries after 0.5 s, 1 s, 2 s ... and a query can land on a running attempt).
    slow_retries = InvocationRetryPolicy(
        initial_interval=timedelta(seconds=2), exponentiation_factor=1.0, max_attempts=10_000
    )
    flaky = restate.Service(f"{prefix}Flaky", invocation_retry_policy=slow_retries if prefix else None)

    @flaky.handler()
    async def run(ctx: restate.Context, tag: str) -> str:
        def attempt() -> str:
            record(tag, "attempt")
            count = events(Path(os.environ[LEDGER_ENV]), tag).count("attempt")
            if count < ATTEMPTS_BEFORE_SUCCESS:
                raise RuntimeError(f"transient failure {count}")
            return f"ok after {count}"

        return await ctx.run("flaky", attempt)

    terminal = restate.Service(f"{prefix}Terminal")

    @terminal.handler()
    async def fail(ctx: restate.Context, tag: str) -> str:
        def check() -> str:
            record(tag, "check")
            raise restate.TerminalError("no such order", 409)

        return await ctx.run("check", check)

    steps = restate.Service(f"{prefix}Steps")

    @steps.handler()
    async def once(ctx: restate.Context, tag: str) -> dict[str, str]:
        def step() -> str:
            record(tag, "step")
            return uuid.uuid4().hex

        token = await ctx.run("step", step)
        return {"tag": tag, "token": token}

    @steps.handler()
    async def gated(ctx: restate.Context, tag: str) -> str:
        await ctx.run("one", lambda: record(tag, "one"))
        record(tag, "one-acked")

        async def two() -> None:
            record(tag, "two-start")
            deadline = time.monotonic() + GATE_WAIT_S_MAX
            while not gate_path(tag).exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("gate never opened")
                await asyncio.sleep(0.02)
            record(tag, "two-end")

        await ctx.run("two", two)
        return f"gated {tag} on {label()}"

    @steps.handler()
    async def sleepy(ctx: restate.Context, req: dict[str, Any]) -> str:
        tag = str(req["tag"])
        await ctx.run("one", lambda: record(tag, "one"))
        record(tag, "one-acked")
        await ctx.sleep(timedelta(milliseconds=int(req["sleep_ms"])))
        record(tag, "slept")
        await ctx.run("two", lambda: record(tag, "two"))
        return f"sleepy {tag} on {label()}"

    counter = restate.VirtualObject(f"{prefix}Counter")

    @counter.handler()
    async def add(ctx: restate.ObjectContext, delta: int) -> int:
        value = (await ctx.get("count", type_hint=int) or 0) + delta
        ctx.set("count", value)
        return value

    @counter.handler(kind="shared")
    async def get(ctx: restate.ObjectSharedContext) -> int:
        return await ctx.get("count", type_hint=int) or 0

    return [greeter, flaky, terminal, steps, counter]


app = restate.app(make_services())
rr_app = restate.app(make_services("Rr"), protocol="request_response")
