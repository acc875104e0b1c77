"""Perdure's SDK with a schedule declared next to its handler, for the cluster tests: the node
that owns the schedule's partition applies the declaration, whichever node registered it."""

from __future__ import annotations

from typing import Any

import perdure

SCHEDULE = "cluster-declared"

declared = perdure.Service("ClusterDeclared")


@declared.handler()
@perdure.schedule(SCHEDULE, every="1s", body={"n": 1}, catch_up_max=60)
async def tick(ctx: perdure.Context, req: dict[str, Any]) -> str:
    await ctx.run("tock", lambda: None)
    return "ticked"


app = perdure.app(services=[declared])
