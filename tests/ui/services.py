"""Official Python SDK (restate-sdk 1.3.0) services the browser tests look at.

Greeter (one run), Flaky (fails every attempt, slowly growing back-off, so it stays
backing-off with a stack trace), Counter (object: add, get, hold on a gate file to keep the
lock while calls queue), Signup (workflow waiting on the promise "approval"), Caller (a call
and a send, the call graph), Sleeper (sleeps: cancel and batch targets) and Journal (a long
journal of state writes, for the benchmark)."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import restate
from restate.retry_policy import InvocationRetryPolicy

from tests.compat.services.ledger import gate_path

GATE_WAIT_S_MAX = 120.0
# 1 s, then 20 s, then 400 s between attempts: the second attempt comes quickly, then it waits.
FLAKY_RETRIES = InvocationRetryPolicy(
    initial_interval=timedelta(seconds=1), exponentiation_factor=20.0, max_attempts=1000
)

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return await ctx.run("build", lambda: f"Hello, {name}!")


flaky = restate.Service("Flaky", invocation_retry_policy=FLAKY_RETRIES)


def _charge_card(tag: str) -> str:
    raise RuntimeError(f"transient failure: payment gateway timed out for {tag}")


@flaky.handler()
async def charge(ctx: restate.Context, tag: str) -> str:
    return await ctx.run("charge", lambda: _charge_card(tag))


counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    value = (await ctx.get("count", type_hint=int) or 0) + delta
    ctx.set("count", value)
    return value


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count", type_hint=int) or 0


@counter.handler()
async def hold(ctx: restate.ObjectContext, tag: str) -> str:
    """Keep the key's lock until the gate file `tag` exists."""

    async def wait() -> None:
        deadline = time.monotonic() + GATE_WAIT_S_MAX
        while not gate_path(tag).exists():
            if time.monotonic() > deadline:
                raise RuntimeError("gate never opened")
            await asyncio.sleep(0.05)

    await ctx.run("wait for gate", wait)
    return f"released {tag}"


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    ctx.set("status", "waiting for approval")
    decision = await ctx.promise("approval", type_hint=str).value()
    ctx.set("status", decision)
    return f"{email}: {decision}"


@signup.handler()
async def approve(ctx: restate.WorkflowSharedContext, decision: str) -> None:
    await ctx.promise("approval", type_hint=str).resolve(decision)


caller = restate.Service("Caller")


@caller.handler()
async def chain(ctx: restate.Context, name: str) -> dict[str, Any]:
    greeting = await ctx.service_call(greet, name)
    ctx.object_send(add, key=name, arg=1)
    return {"greeting": greeting}


sleeper = restate.Service("Sleeper")


@sleeper.handler()
async def nap(ctx: restate.Context, ms: int) -> int:
    await ctx.sleep(timedelta(milliseconds=ms))
    return ms


journal = restate.Service("Journal")


@journal.handler()
async def long(ctx: restate.Context, n: int) -> int:
    """About `n` journal entries: n/2 runs (a command and its completion each)."""
    for i in range(n // 2):
        await ctx.run(f"step {i}", lambda i=i: i)
    return n


app = restate.app([greeter, flaky, counter, signup, caller, sleeper, journal])
