"""`Traced/attempts`: fails its first two attempts, recording the `traceparent` each attempt
received, so a test can check the trace context reaches the service on every attempt."""

from __future__ import annotations

import json
import os
from pathlib import Path

import restate

from tests.compat.services.ledger import LEDGER_ENV, events, record

traced = restate.Service("Traced")
FAILING_ATTEMPTS = 2


@traced.handler()
async def attempts(ctx: restate.Context, tag: str) -> int:
    traceparent = ctx.request().attempt_headers.get("traceparent", "none")
    record(tag, f"traceparent {traceparent}")
    seen = len(events(Path(os.environ[LEDGER_ENV]), tag))
    if seen <= FAILING_ATTEMPTS:
        raise RuntimeError(f"attempt {seen} fails")
    return seen


@traced.handler()
async def call_greeter(ctx: restate.Context, name: str) -> str:
    """Call `Greeter/greet` (tests.compat.services.core) and return the callee's invocation id."""
    call = ctx.generic_call("Greeter", "greet", json.dumps(name).encode())
    callee = await call.invocation_id()
    await call
    return callee


app = restate.app([traced])
