"""Official Python SDK (restate-sdk 1.3.0) workflow for the workflow compatibility scenarios.

`Approval.run` records a step, publishes its status in workflow state, optionally waits on a
gate file (so a promise can be resolved before anyone awaits it), then waits on the durable
promise "decision". Shared handlers resolve, reject and peek that promise and read the status.
"""

from __future__ import annotations

from typing import Any

import restate

from tests.compat.services.ledger import record
from tests.compat.services.objects import wait_gate

approval = restate.Workflow("Approval")
DECISION = "decision"


@approval.main()
async def run(ctx: restate.WorkflowContext, req: dict[str, Any]) -> str:
    tag = str(req["tag"])
    await ctx.run("start", lambda: record(tag, "run-start"))
    ctx.set("status", "waiting")
    if req.get("gated"):

        async def gated() -> None:
            await wait_gate(tag)

        await ctx.run("gate", gated)
    try:
        decision = await ctx.promise(DECISION, type_hint=str).value()
    except restate.TerminalError as err:
        ctx.set("status", f"rejected: {err.message}")
        raise
    ctx.set("status", f"decided: {decision}")
    await ctx.run("end", lambda: record(tag, "run-end"))
    return f"approved by {decision}"


@approval.handler()
async def decide(ctx: restate.WorkflowSharedContext, who: str) -> None:
    await ctx.promise(DECISION, type_hint=str).resolve(who)


@approval.handler()
async def refuse(ctx: restate.WorkflowSharedContext, why: str) -> None:
    await ctx.promise(DECISION, type_hint=str).reject(why, 403)


@approval.handler()
async def peek(ctx: restate.WorkflowSharedContext) -> str | None:
    value: str | None = await ctx.promise(DECISION, type_hint=str).peek()
    return value


@approval.handler()
async def status(ctx: restate.WorkflowSharedContext) -> str | None:
    value: str | None = await ctx.get("status", type_hint=str)
    return value


app = restate.app([approval])
