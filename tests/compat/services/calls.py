"""Official Python SDK (restate-sdk 1.3.0) services for timers, awakeables, calls and cancellation.

`Timers` sleeps (with journaled steps around the sleep), `Waiter` waits on an awakeable whose id
it publishes in the ledger, `Caller` calls, sends and attaches to other invocations, `Inbox`
records each delivery with its wall-clock time, `Tree` is a call chain that compensates when
cancelled. `app` serves them over bidi streaming; `rr_app` serves `RrTimers` and `RrWaiter` in
request-response mode, where every wait suspends the invocation.
"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from typing import Any

import restate

from tests.compat.services.ledger import record

DELAYED_SEND = timedelta(milliseconds=1500)
TREE_DEPTH = 3
LEAF_SLEEP = timedelta(seconds=30)  # never reached in the tests: the tree is cancelled first


def wall_clock() -> float:
    """Unix time (the SDK cannot take the builtin `time.time` as a step: it has no signature)."""
    return time.time()


def make_timers(name: str) -> restate.Service:
    """A plain sleep and a sleep between two journaled steps."""
    timers = restate.Service(name)

    @timers.handler()
    async def sleep(ctx: restate.Context, ms: int) -> int:
        await ctx.sleep(timedelta(milliseconds=ms))
        return ms

    @timers.handler()
    async def sleep_until(ctx: restate.Context, wake_at_s: float) -> float:
        """Sleep until the given Unix time (journaled clock), so many sleeps wake together."""
        now_s = await ctx.run("now", wall_clock)
        await ctx.sleep(timedelta(seconds=max(0.0, wake_at_s - now_s)))
        return wake_at_s

    @timers.handler()
    async def steps(ctx: restate.Context, req: dict[str, Any]) -> str:
        tag = str(req["tag"])
        await ctx.run("before", lambda: record(tag, "before"))
        record(tag, "before-acked")
        await ctx.sleep(timedelta(milliseconds=int(req["ms"])))
        await ctx.run("after", lambda: record(tag, "after"))
        return f"slept {req['ms']}"

    return timers


def make_waiter(name: str) -> restate.Service:
    """Awakeables: `wait` publishes its awakeable id in the ledger; the others complete one."""
    waiter = restate.Service(name)

    @waiter.handler()
    async def wait(ctx: restate.Context, tag: str) -> dict[str, Any]:
        """Create an awakeable, publish its id as ledger event `awakeable <id>`, return its outcome."""
        awakeable_id, result = ctx.awakeable(type_hint=object)
        await ctx.run("publish", lambda: record(tag, f"awakeable {awakeable_id}"))
        try:
            return {"value": await result}
        except restate.TerminalError as err:
            return {"error": err.message, "code": err.status_code}

    @waiter.handler()
    async def resolve(ctx: restate.Context, req: dict[str, Any]) -> None:
        ctx.resolve_awakeable(str(req["id"]), req["value"])

    @waiter.handler()
    async def reject(ctx: restate.Context, req: dict[str, Any]) -> None:
        ctx.reject_awakeable(str(req["id"]), str(req["reason"]), int(req["code"]))

    return waiter


callee = restate.Service("Callee")


@callee.handler()
async def echo(ctx: restate.Context, msg: str) -> str:
    return f"echo {msg}"


@callee.handler()
async def counted(ctx: restate.Context, tag: str) -> dict[str, Any]:
    """Record a run in the ledger; return a fresh token and the `x-tag` header it was called with."""

    def step() -> str:
        record(tag, "counted")
        return uuid.uuid4().hex

    token = await ctx.run("count", step)
    return {"token": token, "x-tag": ctx.request().headers.get("x-tag")}


@callee.handler()
async def slow_echo(ctx: restate.Context, req: dict[str, Any]) -> str:
    await ctx.sleep(timedelta(milliseconds=int(req["ms"])))
    return f"slow echo {req['msg']}"


inbox = restate.VirtualObject("Inbox")


@inbox.handler()
async def deliver(ctx: restate.ObjectContext, msg: str) -> None:
    """Record `deliver <msg> <unix time>` under the object key (the test's tag)."""
    await ctx.run("deliver", lambda: record(ctx.key(), f"deliver {msg} {time.time():.3f}"))


caller = restate.Service("Caller")


@caller.handler()
async def fanout(ctx: restate.Context, tag: str) -> dict[str, Any]:
    """Call Callee/echo, send "now" to Inbox/{tag} and "later" with a 1.5 s delay."""
    sent_at = await ctx.run("clock", wall_clock)
    echoed = await ctx.service_call(echo, tag)
    ctx.object_send(deliver, key=tag, arg="now")
    ctx.object_send(deliver, key=tag, arg="later", send_delay=DELAYED_SEND)
    return {"echo": echoed, "sent_at": sent_at}


@caller.handler()
async def call_twice(ctx: restate.Context, tag: str) -> list[dict[str, Any]]:
    """Call Callee/counted twice with one idempotency key and an `x-tag` header."""
    results = []
    for _ in range(2):
        results.append(await ctx.service_call(counted, tag, idempotency_key=tag, headers={"x-tag": tag}))
    return results


@caller.handler()
async def attach_to(ctx: restate.Context, invocation_id: str) -> Any:
    return await ctx.attach_invocation(invocation_id, type_hint=object)


@caller.handler()
async def send_then_attach(ctx: restate.Context, msg: str) -> dict[str, Any]:
    """Send Callee/slow_echo, then attach to it by the id the send handle reports."""
    handle = ctx.service_send(slow_echo, {"msg": msg, "ms": 300})
    invocation_id = await handle.invocation_id()
    return {"id": invocation_id, "output": await ctx.attach_invocation(invocation_id, type_hint=str)}


tree = restate.Service("Tree")


@tree.handler()
async def level(ctx: restate.Context, req: dict[str, Any]) -> str:
    """Depth 1 calls 2 calls 3, which sleeps; on a TerminalError each level compensates, then re-raises."""
    tag, depth = str(req["tag"]), int(req["depth"])
    await ctx.run("enter", lambda: record(tag, f"enter {depth}"))
    try:
        if depth < TREE_DEPTH:
            await ctx.service_call(level, {"tag": tag, "depth": depth + 1})
        else:
            await ctx.sleep(LEAF_SLEEP)
    except restate.TerminalError as err:
        event = f"compensate {depth} {err.status_code} {err.message}"
        await ctx.run("compensate", lambda: record(tag, event))
        raise
    return f"level {depth} done"


app = restate.app([make_timers("Timers"), make_waiter("Waiter"), callee, inbox, caller, tree])
rr_app = restate.app([make_timers("RrTimers"), make_waiter("RrWaiter")], protocol="request_response")
