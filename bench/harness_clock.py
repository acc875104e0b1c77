"""Wall time of a workflow that sleeps 30 days between two steps, run in `perdure.testing.Harness`
with each SDK (issue 15: under one second). The harness starts once per SDK (its start is timed
apart); each round sends the workflow on a fresh key, moves the clock 30 days and waits for the
result.

    .venv/bin/python -m bench.harness_clock --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from datetime import timedelta

from perdure.testing.harness import Harness
from tests.harness.services import WAIT, official_app, perdure_app


async def run(app: object, rounds: int) -> tuple[float, list[float]]:
    t0 = time.perf_counter()
    async with Harness(app) as h:
        started = time.perf_counter() - t0
        took = []
        for i in range(rounds):
            t = time.perf_counter()
            inv = await h.send(f"Onboarding/k{i}/run", "Ann")
            await h.wait_for_entry(inv, "Command: Sleep")
            await h.advance(WAIT + timedelta(seconds=1))
            result = await h.attach(inv)
            assert result["name"] == "Ann"
            took.append(time.perf_counter() - t)
    return started, took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    for name, app in (("official SDK", official_app), ("Perdure SDK", perdure_app)):
        started, took = asyncio.run(run(app, args.rounds))
        print(
            f"{name}: harness start {started:.3f} s; 30-day workflow median {statistics.median(took):.3f} s,"
            f" worst {max(took):.3f} s over {len(took)} rounds"
        )


if __name__ == "__main__":
    main()
