"""Rebuild and check the crash image of a reported failure from the run directory the test kept.

    python -m tests.reliability.powerloss.replay RUN_DIR POINT POLICY [OUT_DIR]

OUT_DIR (default RUN_DIR/replay-POINT-POLICY) then holds the image exactly as the test checked
it; open it with `sqlite3 OUT_DIR/perdure.sqlite3` or start `perdure server --data-dir OUT_DIR`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.reliability.powerloss.crash import load_run
from tests.reliability.powerloss.verify import check_point


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 4):
        print(__doc__)
        return 2
    run = load_run(Path(argv[0]))
    point, policy = int(argv[1]), argv[2]
    out = Path(argv[3]) if len(argv) == 4 else run.run_dir / f"replay-{point}-{policy}"
    result = check_point(run, point, policy, out)
    print(f"{result.describe(run)}\nimage: {out}\n{len(result.acks)} acks before the power loss")
    for problem in result.verdict.problems:
        print(f"  {problem}")
    print("ok" if not result.verdict.problems else f"{len(result.verdict.problems)} problems")
    return 1 if result.verdict.problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
