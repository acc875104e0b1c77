"""The SDK scenarios, written against restate's public API only. The SDK comes from
SDK_UNDER_TEST (`perdure` or `official`), so the same file proves source compatibility.
Side effects go to the ledger (LEDGER_PATH) so tests can count how often a step really ran."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from pydantic import BaseModel

from tests.compat.services.ledger import events, record
from tests.sdk.services.sdk import restate

# ---- Greeter: one ctx.run ----------------------------------------------------------------------

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return await ctx.run("build", lambda: f"Hello, {name}!")


@greeter.handler()
async def whoami(ctx: restate.Context) -> list[str]:
    request = ctx.request()
    return [request.id[:4], request.headers.get("x-probe", "")]


# ---- failures: retried runs, run retry policy, terminal errors -----------------------------------

failures = restate.Service("Failures")


def _attempt(tag: str, step: str) -> int:
    """Record one attempt of `step` and return how many there were so far."""
    record(tag, step)
    return len([e for e in events(Path(os.environ["LEDGER_PATH"]), tag) if e == step])


@failures.handler()
async def flaky(ctx: restate.Context, tag: str) -> int:
    def step() -> int:
        n = _attempt(tag, "flaky")
        if n < 3:
            raise RuntimeError(f"transient failure {n}")
        return n

    return await ctx.run("flaky", step)


@failures.handler()
async def give_up(ctx: restate.Context, tag: str) -> str:
    def step() -> str:
        _attempt(tag, "always")
        raise RuntimeError("still broken")

    options: restate.RunOptions[str] = restate.RunOptions(
        max_attempts=3, initial_retry_interval=timedelta(milliseconds=10)
    )
    try:
        return await ctx.run_typed("always", step, options)
    except restate.TerminalError as e:
        return f"gave up: {e.status_code}"


@failures.handler()
async def refuse(ctx: restate.Context, order: str) -> str:
    raise restate.TerminalError(f"no such order {order}", status_code=409)


@failures.handler()
async def dice(ctx: restate.Context, tag: str) -> list[str]:
    """random() and uuid() must repeat on the retry caused by the flaky step."""
    roll = str(ctx.random().randint(0, 10**9))
    ident = str(ctx.uuid())
    record(tag, f"drawn {roll} {ident}")

    def step() -> None:
        if _attempt(tag, "step") < 2:
            raise RuntimeError("first attempt fails")

    await ctx.run("step", step)
    return [roll, ident]


# ---- a counter object, state operations ----------------------------------------------------------

counter = restate.VirtualObject("Counter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    total = (await ctx.get("count") or 0) + delta
    ctx.set("count", total)
    return total


@counter.handler(kind="shared")
async def current(ctx: restate.ObjectSharedContext) -> int:
    return await ctx.get("count") or 0


class Address(BaseModel):
    city: str
    zip: str


store = restate.VirtualObject("Store")


@store.handler()
async def state_ops(ctx: restate.ObjectContext) -> dict[str, list[str]]:
    ctx.set("a", 1)
    ctx.set("b", "two")
    ctx.set("profile", Address(city="Lyon", zip="69001"))
    seen = {"initial": sorted(await ctx.state_keys())}
    seen["b"] = [await ctx.get("b")]
    profile = await ctx.get("profile", type_hint=Address)
    seen["profile"] = [type(profile).__name__, profile.city]
    return seen


@store.handler()
async def clear_a(ctx: restate.ObjectContext) -> str | None:
    ctx.clear("a")
    return await ctx.get("a")


@store.handler()
async def wipe(ctx: restate.ObjectContext) -> str | None:
    ctx.clear_all()
    return await ctx.get("b")


@store.handler()
async def put_address(ctx: restate.ObjectContext, address: Address) -> Address:
    ctx.set("address", address)
    return address


@store.handler(kind="shared")
async def keys(ctx: restate.ObjectSharedContext) -> list[str]:
    return sorted(await ctx.state_keys())


# ---- timers, awakeables, calls -------------------------------------------------------------------

timers = restate.Service("Timers")


@timers.handler()
async def nap(ctx: restate.Context, ms: int) -> int:
    start = await ctx.time()
    await ctx.sleep(timedelta(milliseconds=ms))
    end = await ctx.run("end", lambda: time.time())
    return int((end - start) * 1000)


@timers.handler()
async def race(ctx: restate.Context, ms: int) -> list[str]:
    """select between a long and a short timer; gather of two runs."""
    first = await restate.select(
        slow=ctx.sleep(timedelta(seconds=30)), fast=ctx.sleep(timedelta(milliseconds=ms))
    )
    a = ctx.run("a", lambda: "A")
    b = ctx.run("b", lambda: "B")
    await restate.gather(a, b)
    return [first[0], await a, await b]


@timers.handler()
async def combinators(ctx: restate.Context) -> list[str]:
    id1, one = ctx.awakeable()
    id2, two = ctx.awakeable()
    ctx.resolve_awakeable(id1, "one")
    ctx.reject_awakeable(id2, "nope", 418)
    done, pending = await restate.wait_completed(one, ctx.sleep(timedelta(seconds=30)))
    out = [str(len(done)), str(len(pending))]
    async for f in restate.as_completed(one, two):
        try:
            out.append(await f)
        except restate.TerminalError as e:
            out.append(f"{e.status_code} {e.message}")
    return out


mailbox = restate.VirtualObject("Mailbox")


@mailbox.handler()
async def put(ctx: restate.ObjectContext, value: str) -> None:
    ctx.set("value", value)


@mailbox.handler(kind="shared")
async def peek(ctx: restate.ObjectSharedContext) -> str | None:
    return await ctx.get("value")


waiter = restate.Service("Waiter")


@waiter.handler()
async def wait_for_approval(ctx: restate.Context, box: str) -> str:
    awakeable_id, answer = ctx.awakeable()
    ctx.object_send(put, box, awakeable_id)
    return f"got {await answer}"


caller = restate.Service("Caller")


@caller.handler()
async def fan_out(ctx: restate.Context, key: str) -> str:
    hello = await ctx.service_call(greet, "Bob")
    ctx.object_send(add, key, 1)
    ctx.object_send(add, key, 10, send_delay=timedelta(milliseconds=800))
    handle = ctx.object_send(add, key, 100, idempotency_key=f"{key}-once", headers={"x-note": "hi"})
    await handle.invocation_id()
    raw = await ctx.generic_call("Greeter", "greet", b'"Raw"')
    return f"{hello} / {raw.decode()}"


@caller.handler()
async def cancel_other(ctx: restate.Context, ms: int) -> str:
    handle = ctx.service_send(nap, ms)
    target = await handle.invocation_id()
    ctx.cancel_invocation(target)
    try:
        await ctx.attach_invocation(target)
    except restate.TerminalError as e:
        return f"cancelled: {e.status_code}"
    return "not cancelled"


# ---- a workflow whose promise a shared handler resolves -------------------------------------------

approval = restate.Workflow("Approval")


@approval.main()
async def run(ctx: restate.WorkflowContext, doc: str) -> str:
    ctx.set("status", "waiting")
    who = await ctx.promise("approval").value()
    ctx.set("status", "approved")
    return f"{doc} approved by {who}"


@approval.handler()
async def approve(ctx: restate.WorkflowSharedContext, who: str) -> None:
    await ctx.promise("approval").resolve(who)


@approval.handler()
async def peek_approval(ctx: restate.WorkflowSharedContext) -> str:
    return str(await ctx.promise("approval").peek())


@approval.handler()
async def status(ctx: restate.WorkflowSharedContext) -> str | None:
    return await ctx.get("status")


# ---- crash recovery, blocking runs ------------------------------------------------------------------

steps = restate.Service("Steps")


@steps.handler()
async def three_steps(ctx: restate.Context, tag: str) -> str:
    await ctx.run("one", lambda: record(tag, "one"))
    await ctx.sleep(timedelta(milliseconds=1500))
    await ctx.run("two", lambda: record(tag, "two"))
    return "done"


@steps.handler()
async def block(ctx: restate.Context, ms: int) -> str:
    await ctx.run("block", lambda: time.sleep(ms / 1000))
    return "unblocked"


services = [greeter, failures, counter, store, timers, mailbox, waiter, caller, approval, steps]
app = restate.app(services=services)
