"""A/B of two Perdure trees on one scenario: is a change a cut of the server's CPU per invocation?

Runs Perdure alone (no Restate) from tree A and tree B in alternating rounds (A B A B …), each
round a fresh server and SDK process as in `bench.run`, and reports per pair the server's CPU per
invocation and the server's CPU over the SDK's CPU per invocation. The SDK does the same work per
invocation on both trees, so the ratio cancels most of what the machine's state does to both
processes alike (frequency, cache, other load): on the 2-core development machine its spread
within one tree is about 10% (0.95-1.05) where the raw CPU per invocation moves 20-30%.

A tree is a directory (a checkout or `git worktree`) or a git revision of this repository, which is
exported with `git archive` into a temporary directory. Both trees run on this interpreter's
environment (the same dependencies), only the `perdure` package differs.

    python -m bench.ab HEAD~1 HEAD --scenario greeter --pairs 5 --n 4000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from bench.run import SCENARIOS, RoundResult, add_sdk_args, run_round
from tests.support.paths import REPO_ROOT


def export_tree(spec: str, into: Path) -> Path:
    """A directory holding the tree `spec`: itself if it is a directory, else `git archive` of it."""
    path = Path(spec)
    if path.is_dir():
        return path.resolve()
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "archive", "--format=tar", spec, "perdure"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def launcher(tree: Path, into: Path) -> Path:
    """An executable that runs `perdure` from `tree` on this interpreter (PERDURE_BIN points at it).

    The tree goes first on `sys.path` from inside the process: `python -c` puts the working
    directory (the bench's, which the server inherits) ahead of PYTHONPATH, so PYTHONPATH alone
    would run whichever tree the bench was started from, on both sides. The server refuses to
    start if `perdure` still comes from elsewhere."""
    script = into / "perdure"
    code = (
        f"import sys; sys.path.insert(0, {str(tree)!r}); import perdure; "
        f"assert perdure.__file__.startswith({str(tree)!r}), perdure.__file__; "
        "from perdure.cli import main; sys.exit(main())"
    )
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -c "{code}" "$@"\n')
    script.chmod(0o755)
    return script


@contextlib.contextmanager
def perdure_bin(path: Path) -> Iterator[None]:
    old = os.environ.get("PERDURE_BIN")
    os.environ["PERDURE_BIN"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("PERDURE_BIN", None)
        else:
            os.environ["PERDURE_BIN"] = old


def ratio(r: RoundResult) -> float:
    return r.server_cpu_ms_per_inv / r.sdk_cpu_ms_per_inv if r.sdk_cpu_ms_per_inv else float("nan")


def report(pairs: list[tuple[RoundResult, RoundResult]]) -> dict[str, object]:
    """Medians of each side and how many pairs B was lower in."""
    out: dict[str, object] = {}
    for name, get in (
        ("server_over_sdk", ratio),
        ("server_cpu_ms_per_inv", lambda r: r.server_cpu_ms_per_inv),
        ("p99_ms", lambda r: r.p99_ms),
        ("throughput_per_s", lambda r: r.throughput_per_s),
    ):
        a = [get(p[0]) for p in pairs]
        b = [get(p[1]) for p in pairs]
        out[name] = {
            "a_median": statistics.median(a),
            "b_median": statistics.median(b),
            "b_over_a": statistics.median(b) / statistics.median(a) if statistics.median(a) else None,
            "b_lower_in": sum(y < x for x, y in zip(a, b, strict=True)),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("a", help="tree A: a directory or a git revision")
    parser.add_argument("b", help="tree B: a directory or a git revision")
    parser.add_argument("--scenario", default="greeter", choices=sorted(SCENARIOS))
    parser.add_argument("--pairs", type=int, default=5, help="A B rounds")
    parser.add_argument("--n", type=int, default=4000, help="measured invocations per round")
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None, help="JSON output file")
    add_sdk_args(parser)
    args = parser.parse_args(argv)
    pairs: list[tuple[RoundResult, RoundResult]] = []
    with tempfile.TemporaryDirectory(prefix="perdure-ab-") as tmp_s:
        tmp = Path(tmp_s)
        bins = []
        for label, spec in (("a", args.a), ("b", args.b)):
            tree = export_tree(spec, tmp / f"tree-{label}")
            (tmp / f"bin-{label}").mkdir()
            bins.append(launcher(tree, tmp / f"bin-{label}"))
            (tmp / f"rounds-{label}").mkdir()
        print(
            f"{'pair':>4} {'A srv/sdk':>10} {'B srv/sdk':>10} {'A ms/inv':>9} {'B ms/inv':>9}"
            f" {'A p99':>7} {'B p99':>7}",
            flush=True,
        )
        for i in range(args.pairs):
            results = []
            for label, binary in zip("ab", bins, strict=True):
                with perdure_bin(binary):
                    r = run_round("perdure", i, args, tmp / f"rounds-{label}")
                if r.errors:
                    print(f"tree {label} round {i}: {r.errors} errors: {r.first_error}", file=sys.stderr)
                results.append(r)
            a, b = results
            pairs.append((a, b))
            print(
                f"{i:>4} {ratio(a):>10.3f} {ratio(b):>10.3f} {a.server_cpu_ms_per_inv:>9.3f}"
                f" {b.server_cpu_ms_per_inv:>9.3f} {a.p99_ms:>7.1f} {b.p99_ms:>7.1f}",
                flush=True,
            )
    summary = report(pairs)
    for name, values in summary.items():
        assert isinstance(values, dict)
        print(
            f"{name}: A {values['a_median']:.3f}  B {values['b_median']:.3f}  "
            f"B/A {values['b_over_a']:.3f}  B lower in {values['b_lower_in']} of {len(pairs)}"
        )
    if args.out:
        args.out.write_text(
            json.dumps(
                {
                    "config": {k: str(v) for k, v in vars(args).items()},
                    "summary": summary,
                    "pairs": [[asdict(a), asdict(b)] for a, b in pairs],
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
