"""What a failed simulation reports: which invariant broke, where, and how to
replay it."""

from __future__ import annotations


class Violation(Exception):
    """An invariant does not hold (raised inside a step)."""

    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


class SimulationFailure(Exception):
    """A violation with its seed and step: `run_seed(seed)` reproduces it."""

    def __init__(
        self, seed: int, step: int, invariant: str, detail: str, trace: list[str], cluster: bool = False
    ) -> None:
        self.seed = seed
        self.step = step
        self.invariant = invariant
        self.detail = detail
        self.trace = trace
        mode = " --cluster" if cluster else ""
        super().__init__(
            f"seed {seed}, step {step}: {invariant}: {detail}\n"
            f"  replay: python -m perdure.testing.simulation{mode} --seed {seed} --trace"
        )
        self.cluster = cluster

    def __reduce__(self) -> tuple[type, tuple[int, int, str, str, list[str], bool]]:
        return (
            SimulationFailure,
            (self.seed, self.step, self.invariant, self.detail, self.trace, self.cluster),
        )
