"""Official Python SDK (restate-sdk 1.3.0) sinks for the Kafka suites.

`KCounter` (virtual object): each record adds its value to the key's count and appends its offset to
the key's journaled `seen` list, so exactly-once and per-key order are read back from state, not from
side effects. The headers of every record go to the ledger. `KLog` (service) and `KFlow` (workflow)
record what they receive in the ledger.
"""

from __future__ import annotations

import json
from typing import Any

import restate

from tests.compat.services.ledger import record

counter = restate.VirtualObject("KCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, value: int) -> int:
    headers = dict(ctx.request().headers)
    count = (await ctx.get("count", type_hint=int) or 0) + value
    seen: list[int] = await ctx.get("seen", type_hint=list[int]) or []
    seen.append(int(headers.get("kafka.offset", "-1")))
    ctx.set("count", count)
    ctx.set("seen", seen)
    await ctx.run("ledger", lambda: record(f"headers-{ctx.key()}", json.dumps(headers, sort_keys=True)))
    return count


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> dict[str, Any]:
    return {
        "count": await ctx.get("count", type_hint=int) or 0,
        "seen": await ctx.get("seen", type_hint=list[int]) or [],
    }


log = restate.Service("KLog")


@log.handler()
async def note(ctx: restate.Context, value: str) -> None:
    headers = dict(ctx.request().headers)
    await ctx.run("ledger", lambda: record("klog", f"{value} {headers.get('kafka.partition')}"))


flow = restate.Workflow("KFlow")


@flow.main()
async def run(ctx: restate.WorkflowContext, value: str) -> str:
    await ctx.run("ledger", lambda: record("kflow", f"{ctx.key()} {value}"))
    return value


app = restate.app([counter, log, flow])
