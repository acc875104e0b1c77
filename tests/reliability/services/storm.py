"""Official Python SDK (restate-sdk 1.3.0) services for the kill storm.

`StormChain/run` runs journaled steps (`ctx.run`), optional durable sleeps and a call to the
`Counter` object of tests/compat/services/core.py. Every step produces a fresh random value
and writes it to the ledger (`produce`); the next step writes the value it received (`got`),
and the handler writes the value it holds after each step (`use`, also on every replay). A
correct server hands each step's journaled value downstream, so per (request, step) exactly
one distinct value is ever `got` or `use`d, whatever crashes happened; a step may be
`produce`d more than once only when its result was never journaled.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from datetime import timedelta
from typing import Any

import restate

from tests.compat.services.core import make_services
from tests.compat.services.ledger import record

chain = restate.Service("StormChain")


STEP_WORK_S_MAX = 0.03


async def _step(rid: str, index: int, previous: str | None) -> str:
    """One side effect: note the value received from the step before, produce a new one.

    The short pause after producing widens the window in which a crash loses the (not yet
    journaled) result, so re-executions really happen during a storm."""
    if previous is not None:
        record(rid, f"got s{index - 1} {previous}")
    value = uuid.uuid4().hex
    record(rid, f"produce s{index} {value}")
    await asyncio.sleep(random.uniform(0, STEP_WORK_S_MAX))
    return value


@chain.handler()
async def run(ctx: restate.Context, req: dict[str, Any]) -> list[str]:
    """req: {id, steps, sleep_ms, sleep_after, counter?, delta}; returns each step's value."""
    rid = str(req["id"])
    values: list[str] = []
    previous: str | None = None
    for index in range(int(req["steps"])):
        value = await ctx.run(f"s{index}", _step, args=(rid, index, previous))
        record(rid, f"use s{index} {value}")
        values.append(value)
        previous = value
        if index == int(req["sleep_after"]) and int(req["sleep_ms"]) > 0:
            await ctx.sleep(timedelta(milliseconds=int(req["sleep_ms"])))
    if req.get("counter"):
        delta = json.dumps(int(req["delta"])).encode()
        await ctx.generic_call("Counter", "add", arg=delta, key=str(req["counter"]))
    return values


# The core compat services (Greeter, Counter object, ...) plus the chain.
app = restate.app([*make_services(), chain])
