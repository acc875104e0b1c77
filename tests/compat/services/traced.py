"""`Traced/attempts`: fails its first two attempts, recording the `traceparent` each attempt
received, so a test can check the trace context reaches the service on every attempt."""

from __future__ import annotations

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


app = restate.app([traced])
