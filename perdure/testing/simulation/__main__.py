"""Command line: `python -m perdure.testing.simulation --seeds 10000` runs
seeds 0..9999 (or from --start); `--seed N --trace` replays one seed and
prints the last steps before its failure."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

from perdure.testing.simulation.runner import run_seed
from perdure.testing.simulation.violation import SimulationFailure
from perdure.testing.simulation.world import SimConfig


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perdure.testing.simulation", description=__doc__)
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--seed", type=int, help="replay this one seed")
    ap.add_argument("--steps", type=int, default=SimConfig().steps, help="random steps per seed")
    ap.add_argument("--trace", action="store_true", help="print the trace of a failing seed")
    ap.add_argument("--keep-going", action="store_true", help="do not stop at the first failure")
    args = ap.parse_args(argv)
    config = replace(SimConfig(), steps=args.steps)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    failures = 0
    t0 = time.monotonic()
    for i, seed in enumerate(seeds, 1):
        try:
            run_seed(seed, config)
        except SimulationFailure as f:
            failures += 1
            print(f, flush=True)
            if args.trace:
                print("\n".join(f"    {line}" for line in f.trace))
            if not args.keep_going:
                break
        if i % 500 == 0:
            print(f"{i} seeds, {failures} failed, {time.monotonic() - t0:.1f}s", file=sys.stderr, flush=True)
    print(f"ran {i} seeds in {time.monotonic() - t0:.1f}s: {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
