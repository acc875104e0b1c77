"""Official Python SDK services for concurrency and rate rules (issue 15).

`Limited/step` journals its entry and exit (ledger `enter <n>`, `exit <n>`) around a short sleep,
so a test reads from the ledger whether two ran at once; `Limited/tick` records one line and
returns, for the rate-limit test."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate

from tests.compat.services.ledger import record

STEP_SLEEP = timedelta(milliseconds=300)

limited = restate.Service("Limited")


@limited.handler()
async def step(ctx: restate.Context, req: dict[str, Any]) -> int:
    tag, n = str(req["tag"]), int(req["n"])
    await ctx.run("enter", lambda: record(tag, f"enter {n}"))
    await ctx.sleep(STEP_SLEEP)
    await ctx.run("exit", lambda: record(tag, f"exit {n}"))
    return n


@limited.handler()
async def tick(ctx: restate.Context, req: dict[str, Any]) -> int:
    await ctx.run("tick", lambda: record(str(req["tag"]), f"tick {req['n']}"))
    return int(req["n"])


app = restate.app(services=[limited])
