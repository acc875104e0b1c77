"""Kill storm, short version for CI: a few hundred invocations of official-SDK services while the
Perdure server is SIGKILLed and restarted at seeded random moments (see perdure/testing/killstorm.py;
the long version is `python -m perdure.testing.killstorm --invocations 2000 --kills 50`).

KILLSTORM_SEED=N replays a storm's workload and kill schedule.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from perdure.testing.killstorm import (
    LogicalRequest,
    Outcome,
    StormConfig,
    check_chain,
    plan,
    reexecutions,
    run_storm,
)

SHORT_INVOCATIONS = 300
SHORT_KILLS = 10
SHORT_DEADLINE_S = 75.0


@pytest.mark.timeout(90)
async def test_acknowledged_work_survives_a_storm_of_server_kills(tmp_path: Path) -> None:
    seed = int(os.environ.get("KILLSTORM_SEED", random.randrange(2**32)))
    print(f"kill storm seed {seed} (replay with KILLSTORM_SEED={seed})")
    config = StormConfig(
        seed=seed, invocations=SHORT_INVOCATIONS, kills=SHORT_KILLS, deadline_s=SHORT_DEADLINE_S
    )
    report = await run_storm(config, tmp_path)
    print(report.summary())
    assert report.ok, report.summary()
    assert report.kills >= SHORT_KILLS // 2, f"the storm ended before it stormed: {report.summary()}"
    assert sum(o.attempts - 1 for o in report.outcomes.values()) > 0, "no client ever had to retry"


# --- the checks themselves: they must fail on the ledgers a broken server would leave ---------


def chain(steps: int = 2) -> LogicalRequest:
    body = {"id": "r", "steps": steps, "sleep_ms": 0, "sleep_after": 0, "counter": None, "delta": 1}
    return LogicalRequest("r", "StormChain/run", body, None, 1, steps, 0.0)


def test_a_clean_chain_ledger_passes_even_with_unjournaled_reexecution() -> None:
    lines = [
        ("produce", "s0", "a"),  # lost in a crash before it was journaled
        ("produce", "s0", "b"),
        ("use", "s0", "b"),
        ("got", "s0", "b"),
        ("produce", "s1", "c"),
        ("use", "s1", "c"),
        ("use", "s0", "b"),  # replay after another crash
        ("use", "s1", "c"),
    ]
    assert check_chain(chain(), Outcome(status=200, body=["b", "c"]), lines) == []
    assert reexecutions(lines) == 1


def test_a_step_result_used_twice_with_different_values_is_caught() -> None:
    lines = [
        ("produce", "s0", "a"),
        ("use", "s0", "a"),
        ("produce", "s0", "b"),  # a journaled step ran again: its result was lost
        ("use", "s0", "b"),
        ("produce", "s1", "c"),
        ("use", "s1", "c"),
    ]
    problems = check_chain(chain(), Outcome(status=200, body=["b", "c"]), lines)
    assert any("used with 2 different values" in p for p in problems), problems


def test_a_returned_value_other_than_the_used_one_is_caught() -> None:
    lines = [("produce", "s0", "a"), ("use", "s0", "a"), ("produce", "s1", "c"), ("use", "s1", "c")]
    problems = check_chain(chain(), Outcome(status=200, body=["x", "c"]), lines)
    assert problems == ["r: step s0 returned x but used ['a']"]


def test_the_seeded_plan_is_reproducible_and_mixes_every_kind_of_work() -> None:
    config = StormConfig(seed=7, invocations=200, kills=5)
    first, again = plan(config), plan(config)
    assert first == again
    chains = [r for r in first if r.target == "StormChain/run"]
    assert any(r.target.startswith("Counter/") for r in first)
    assert any(isinstance(r.body, dict) and r.body["sleep_ms"] > 0 for r in chains)
    assert any(r.counter is not None for r in chains)
    assert len({r.rid for r in first}) == len(first)
