"""Official Python SDK services for restart-as-new and retry-now (issue 15).

`Restartable.steps` journals two steps that record themselves in the ledger, so a test sees
which steps a restarted invocation ran again; `Restartable.failing` fails every attempt (a retry
is an hour away) and records each attempt; `RestartWf` is a workflow (Restate refuses to restart
those)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import restate
from restate.retry_policy import InvocationRetryPolicy

from tests.compat.services.ledger import record

RETRY_LATER = InvocationRetryPolicy(initial_interval=timedelta(hours=1), max_attempts=100)

restartable = restate.Service("Restartable", invocation_retry_policy=RETRY_LATER)


def fresh(tag: str, step: str) -> str:
    """Record that `step` ran and return a value no other run of it returns."""
    record(tag, step)
    return uuid.uuid4().hex


@restartable.handler()
async def steps(ctx: restate.Context, req: dict[str, Any]) -> list[str]:
    tag = str(req["tag"])
    one = await ctx.run("one", lambda: fresh(tag, "one"))
    two = await ctx.run("two", lambda: fresh(tag, "two"))
    return [one, two]


@restartable.handler()
async def sleep(ctx: restate.Context, ms: int) -> int:
    await ctx.sleep(timedelta(milliseconds=ms))
    return ms


@restartable.handler()
async def failing(ctx: restate.Context, tag: str) -> str:
    record(tag, "attempt")
    raise ValueError("fails every time")


restart_wf = restate.Workflow("RestartWf")


@restart_wf.main()
async def run(ctx: restate.WorkflowContext, n: int) -> int:
    return n


app = restate.app(services=[restartable, restart_wf])
