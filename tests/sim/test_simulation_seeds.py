"""The seeded simulation of the partition processor: many short seeds hold
every invariant, a seed replays exactly, and the runs really exercise faults."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from perdure.server.processor.model import INVOKED, Invocation
from perdure.server.processor.processor import Processor
from perdure.testing.simulation import SimConfig, SimulationFailure, first_failure, run_seed, run_seeds

ROOT = Path(__file__).resolve().parents[2]
SEEDS = int(os.environ.get("PERDURE_SIM_SEEDS", "2000"))


@pytest.mark.timeout(SEEDS * 0.2 + 60)  # a hang guard: ~40 ms of CPU per seed on a quiet machine
def test_many_seeds_hold_every_invariant() -> None:
    _, failures = run_seeds(range(SEEDS))
    if failures:
        first = failures[0]
        trace = "\n".join(first.trace[-30:])
        pytest.fail(f"{len(failures)} of {SEEDS} seeds failed; first:\n{first}\n{trace}")


def outcome(seed: int) -> str:
    """What a run ends with: its durable state's digest, or its failure."""
    try:
        return run_seed(seed).fingerprint
    except SimulationFailure as f:
        return f"{f.step} {f.invariant}: {f.detail}"


def test_a_seed_replays_to_the_same_end() -> None:
    assert outcome(3) == outcome(3)
    assert outcome(4) != outcome(3)


def test_a_seed_replays_under_another_hash_seed() -> None:
    """Set and dict order of str/bytes must not leak into the run."""
    code = "from tests.sim.test_simulation_seeds import outcome; print(outcome(5))"
    prints = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        for hash_seed in ("1", "2")
    }
    assert prints == {outcome(5)}


def test_a_failure_names_its_seed_and_step_and_how_to_replay(monkeypatch: pytest.MonkeyPatch) -> None:
    """Break the processor (admit without taking the key lock) and read the report."""

    def admit_without_lock(self: Processor, inv: Invocation) -> None:
        inv.status = INVOKED
        self._touch(inv)
        self._start_attempt(inv)

    monkeypatch.setattr(Processor, "_admit", admit_without_lock)
    failure = first_failure(range(100), SimConfig(steps=150))
    assert failure is not None
    assert failure.invariant == "one exclusive handler per key runs at a time"
    message = str(failure)
    assert f"seed {failure.seed}, step {failure.step}:" in message
    assert f"python -m perdure.testing.simulation --seed {failure.seed} --trace" in message
    assert failure.trace and failure.trace[-1].startswith(f"{failure.step} ")


def test_runs_exercise_crashes_faults_retries_suspensions_and_termination() -> None:
    totals: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    results, _ = run_seeds(range(80))
    for r in results:
        for name in (
            "crashes",
            "storage_faults",
            "suspensions",
            "sdk_errors",
            "transport_failures",
            "terminations",
            "timers_fired",
            "runs_executed",
        ):
            totals[name] += getattr(r.stats, name)
        outcomes.update(r.stats.by_outcome)
    assert len(results) > 10
    assert all(totals[k] > 5 for k in totals), totals
    assert outcomes["ok"] > 300
    assert any("killed" in o for o in outcomes) and any("cancelled" in o for o in outcomes), outcomes


def test_command_line_runs_seeds_and_prints_a_replayable_failure() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perdure.testing.simulation", "--seeds", "3", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    failed = [seed for seed in range(3) if not outcome(seed).isalnum()]
    assert proc.returncode == (1 if failed else 0), proc.stdout + proc.stderr
    assert "ran 3 seeds in" in proc.stdout and f"{len(failed)} failed" in proc.stdout
    for seed in failed:
        assert f"--seed {seed} --trace" in proc.stdout
