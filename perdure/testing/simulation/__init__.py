"""Deterministic seeded simulation of the partition processor (VOPR style).

`run_seed(seed)` drives a Processor over a MemoryStorage with a fake clock, a
simulated SDK endpoint, random client traffic and injected faults (crashes,
failed commits, failing attempts, cancel/kill), checking invariants after
every step. `python -m perdure.testing.simulation --seeds 10000` runs many.
`run_cluster_seed(seed)` simulates several nodes with leases over one store
(cluster.py); `--cluster` on the command line."""

from perdure.testing.simulation.cluster import ClusterConfig, ClusterWorld
from perdure.testing.simulation.runner import SimResult, first_failure, run_cluster_seed, run_seed, run_seeds
from perdure.testing.simulation.violation import SimulationFailure, Violation
from perdure.testing.simulation.world import SimConfig, Stats, World

__all__ = [
    "ClusterConfig",
    "ClusterWorld",
    "SimConfig",
    "SimResult",
    "SimulationFailure",
    "Stats",
    "Violation",
    "World",
    "first_failure",
    "run_cluster_seed",
    "run_seed",
    "run_seeds",
]
