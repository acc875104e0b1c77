"""Perdure's SDK with a schedule declared next to its handler (issue 15): `Declared/tick` runs
every second with a fixed body and records one ledger line per tick. The declaration is handler
metadata in the manifest, which the real Restate server and the official CLI read unchanged."""

from __future__ import annotations

from typing import Any

import perdure
from tests.compat.services.ledger import record

SCHEDULE = "declared-every-second"
TAG = "declared"

declared = perdure.Service("Declared")


@declared.handler()
@perdure.schedule(SCHEDULE, every="1s", body={"tag": TAG}, catch_up_max=60)
async def tick(ctx: perdure.Context, req: dict[str, Any]) -> str:
    await ctx.run("tick", lambda: record(str(req["tag"]), "tick"))
    return "ticked"


app = perdure.app(services=[declared])
