"""One service, `Versioned`, deployed twice (labels v1, v2) to check deployment pinning."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate

from tests.compat.services.ledger import label, record

versioned = restate.Service("Versioned")


@versioned.handler()
async def slow(ctx: restate.Context, req: dict[str, Any]) -> str:
    """Two steps around a sleep; both record which deployment ran them."""
    tag = str(req["tag"])
    await ctx.run("start", lambda: record(tag, f"start {label()}"))
    record(tag, "start-acked")
    await ctx.sleep(timedelta(milliseconds=int(req["sleep_ms"])))
    await ctx.run("end", lambda: record(tag, f"end {label()}"))
    return label()


@versioned.handler()
async def which(ctx: restate.Context) -> str:
    """Which deployment served this call."""
    return label()


app = restate.app([versioned])
