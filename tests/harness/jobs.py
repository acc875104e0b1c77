"""A service for the schedule tests (official Python SDK), served in-process by the harness:
`Job/hold` waits on an awakeable whose id it appends to `HELD` (the test resolves it), so a
test decides when each tick's invocation ends; `Job/quick` returns at once."""

from __future__ import annotations

from typing import Any

import restate

HELD: list[str] = []  # awakeable ids, in the order the invocations published them

job = restate.Service("Job")


def publish(awakeable_id: str) -> None:
    HELD.append(awakeable_id)


@job.handler()
async def hold(ctx: restate.Context, req: dict[str, Any]) -> str:
    awakeable_id, done = ctx.awakeable(type_hint=str)
    await ctx.run("publish", lambda: publish(awakeable_id))
    return await done


@job.handler()
async def quick(ctx: restate.Context, req: dict[str, Any]) -> str:
    return str(req.get("tag", ""))


app = restate.app(services=[job])
