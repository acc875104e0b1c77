"""The same workflow with the official Python SDK and with Perdure's SDK (source-compatible, so
one definition serves both): a step, a 30-day sleep, another step."""

from __future__ import annotations

import time
from datetime import timedelta
from types import ModuleType
from typing import Any

import restate

import perdure

WAIT = timedelta(days=30)


def clock_ms() -> int:
    return int(time.time() * 1000)


def make_onboarding(sdk: ModuleType) -> Any:
    wf = sdk.Workflow("Onboarding")

    @wf.main()
    async def run(ctx: Any, name: str) -> dict[str, object]:
        first = await ctx.run("welcome", clock_ms)
        ctx.set("stage", "waiting")
        await ctx.sleep(WAIT)
        ctx.set("stage", "done")
        return {"name": name, "welcome_ms": first}

    return wf


official_app = restate.app(services=[make_onboarding(restate)])
perdure_app = perdure.app(services=[make_onboarding(perdure)])
