"""Run seeds: one seed is one reproducible simulation; a failure carries its
seed and step and replays with `run_seed(seed)`."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from perdure.testing.simulation.violation import SimulationFailure, Violation
from perdure.testing.simulation.world import SimConfig, Stats, World


@dataclass(frozen=True, slots=True)
class SimResult:
    seed: int
    steps: int
    stats: Stats
    fingerprint: str


def run_seed(seed: int, config: SimConfig | None = None) -> SimResult:
    """Run one simulation; raises SimulationFailure when an invariant breaks."""
    world = World(seed, config)
    try:
        world.run()
    except Violation as v:
        # `from None` and no traceback kept by callers: a failure must not pin its world in memory.
        raise SimulationFailure(seed, world.step_no, v.invariant, v.detail, list(world.trace)) from None
    except Exception as exc:
        exc.add_note(f"simulation seed {seed}, step {world.step_no}")
        raise
    return SimResult(seed, world.step_no, world.stats, world.fingerprint())


def run_seeds(
    seeds: Iterable[int], config: SimConfig | None = None
) -> tuple[list[SimResult], list[SimulationFailure]]:
    """Run every seed; collect results and failures (a failure does not stop the others)."""
    results: list[SimResult] = []
    failures: list[SimulationFailure] = []
    for seed in seeds:
        try:
            results.append(run_seed(seed, config))
        except SimulationFailure as f:
            failures.append(f.with_traceback(None))
    return results, failures


def first_failure(seeds: Iterable[int], config: SimConfig | None = None) -> SimulationFailure | None:
    """The first failing seed's failure, or None if every seed passes."""
    for seed in seeds:
        try:
            run_seed(seed, config)
        except SimulationFailure as f:
            return f.with_traceback(None)
    return None
