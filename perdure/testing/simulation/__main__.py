"""Command line: `python -m perdure.testing.simulation --seeds 10000` runs
seeds 0..9999 (or from --start) on --jobs processes; `--seed N --trace`
replays one seed and prints the last steps before its failure. `--cluster`
runs the simulation of several nodes with leases over one store (--nodes,
--bits) instead of the single processor."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

from perdure.testing.simulation.cluster import ClusterConfig
from perdure.testing.simulation.runner import run_cluster_seed, run_seed
from perdure.testing.simulation.violation import SimulationFailure
from perdure.testing.simulation.world import SimConfig

CHUNK_SEEDS = 50


def _chunk(seeds: list[int], config: SimConfig) -> list[SimulationFailure]:
    failures = []
    for seed in seeds:
        try:
            if isinstance(config, ClusterConfig):
                run_cluster_seed(seed, config)
            else:
                run_seed(seed, config)
        except SimulationFailure as f:
            failures.append(f.with_traceback(None))
    return failures


def _results(seeds: list[int], config: SimConfig, jobs: int) -> Iterator[tuple[int, list[SimulationFailure]]]:
    """(seeds done, failures) per chunk, in seed order."""
    chunks = [seeds[i : i + CHUNK_SEEDS] for i in range(0, len(seeds), CHUNK_SEEDS)]
    if jobs <= 1:
        for c in chunks:
            yield len(c), _chunk(c, config)
        return
    with ProcessPoolExecutor(jobs) as pool:
        for c, failures in zip(chunks, pool.map(_chunk, chunks, [config] * len(chunks)), strict=True):
            yield len(c), failures


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perdure.testing.simulation", description=__doc__)
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--seed", type=int, help="replay this one seed")
    ap.add_argument("--steps", type=int, default=SimConfig().steps, help="random steps per seed")
    ap.add_argument("--jobs", type=int, default=1, help=f"processes (this machine has {os.cpu_count()})")
    ap.add_argument("--trace", action="store_true", help="print the trace of each failing seed")
    ap.add_argument("--keep-going", action="store_true", help="do not stop at the first failure")
    ap.add_argument("--cluster", action="store_true", help="simulate several nodes over one store")
    ap.add_argument("--nodes", type=int, default=ClusterConfig().nodes, help="cluster nodes (--cluster)")
    ap.add_argument("--bits", type=int, default=ClusterConfig().bits, help="2**bits partitions (--cluster)")
    args = ap.parse_args(argv)
    config: SimConfig = replace(SimConfig(), steps=args.steps)
    if args.cluster:
        config = replace(ClusterConfig(), steps=args.steps, nodes=args.nodes, bits=args.bits)
    seeds = [args.seed] if args.seed is not None else list(range(args.start, args.start + args.seeds))
    done = failed = 0
    t0 = time.monotonic()
    for n, failures in _results(seeds, config, args.jobs):
        done += n
        for f in failures:
            failed += 1
            print(f, flush=True)
            if args.trace:
                print("\n".join(f"    {line}" for line in f.trace))
        if failures and not args.keep_going:
            break
        if done % 500 < n:
            print(f"{done} seeds, {failed} failed, {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    print(f"ran {done} seeds in {time.monotonic() - t0:.1f}s: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
