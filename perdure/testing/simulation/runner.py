"""Run seeds: one seed is one reproducible simulation; a failure carries its
seed and step and replays with `run_seed(seed)`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from perdure.testing.simulation.cluster import ClusterConfig, ClusterWorld
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


def run_cluster_seed(seed: int, config: ClusterConfig | None = None) -> SimResult:
    """Run one simulation of a cluster (cluster.py); raises SimulationFailure like run_seed."""
    world = ClusterWorld(seed, config)
    try:
        world.run()
    except Violation as v:
        raise SimulationFailure(seed, world.step_no, v.invariant, v.detail, list(world.trace), True) from None
    except Exception as exc:
        exc.add_note(f"cluster simulation seed {seed}, step {world.step_no}")
        raise
    return SimResult(seed, world.step_no, world.stats, world.fingerprint())


def caught_by(
    invariant: str, seeds: Iterable[int], run: Callable[[int], SimResult] = run_seed
) -> SimulationFailure:
    """The first seed whose run breaks `invariant`, checked to replay to the very same failure
    (for the tests proving that each invariant catches a bug put in on purpose)."""
    for seed in seeds:
        try:
            run(seed)
        except SimulationFailure as f:
            if f.invariant != invariant:
                continue
            try:
                run(seed)
            except SimulationFailure as again:
                assert (again.step, again.invariant, again.detail) == (f.step, f.invariant, f.detail)
                return f.with_traceback(None)
            raise AssertionError(f"seed {seed} broke {invariant!r} once, then passed") from None
    raise AssertionError(f"no seed broke {invariant!r}")
