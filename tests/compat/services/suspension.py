"""Official Python SDK service with a 1 s inactivity timeout: an invocation waiting on an
awakeable is suspended by the server (bidi stream closed) and resumed when it is resolved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import restate

from tests.compat.services.ledger import record

INACTIVITY_S = 1.0

patient = restate.Service("Patient", inactivity_timeout=timedelta(seconds=INACTIVITY_S))


@patient.handler()
async def wait(ctx: restate.Context, tag: str) -> dict[str, Any]:
    awakeable_id, result = ctx.awakeable(type_hint=object)
    await ctx.run("publish", lambda: record(tag, f"awakeable {awakeable_id}"))
    value = await result
    await ctx.run("after", lambda: record(tag, "after"))
    return {"value": value}


app = restate.app([patient])
