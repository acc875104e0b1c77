"""Small state writes and reads on the object keys stored right beside a big state value, at the
SQLite store itself (`SqliteStorage`, no processor, no network):

    python -m bench.big_neighbours --mb 10 --n 1000 --stores 3

Per fresh store: ten objects `Blob/b0-0` .. `Blob/b0-9` with a small value, then `--mb` MB under
`Blob/b0` (its rows sort just before theirs), then `--n` small writes (one commit each) and `--n`
`get_state` reads of those ten objects, each timed as a whole; prints the median and range over
`--stores` stores and the store's schema version. Run it from two trees (PYTHONPATH) to compare
layouts: SQLite compares a search key with a whole cell, so in a `WITHOUT ROWID` state table
(schema version 2) every search passing the big cell read it again."""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.storage.sqlite import SqliteStorage
from perdure.server.storage.sqlite_layout import SCHEMA_VERSION

NEIGHBOURS = 10


def state_set(key: str, value: bytes) -> WriteBatch:
    b = WriteBatch()
    b.op(Op.STATE_SET, "Blob", key, b"n", value)
    return b


async def one_store(mb: int, n: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory(prefix="perdure-neighbours-") as tmp:
        storage = SqliteStorage(Path(tmp))
        await storage.open()
        try:
            for j in range(NEIGHBOURS):
                await storage.commit_batch(state_set(f"b0-{j}", b"0"))
            await storage.commit_batch(state_set("b0", b"x" * (mb << 20)))
            t0 = time.perf_counter()
            for i in range(n):
                await storage.commit_batch(state_set(f"b0-{i % NEIGHBOURS}", b"%d" % i))
            t1 = time.perf_counter()
            for i in range(n):
                storage.get_state("Blob", f"b0-{i % NEIGHBOURS}")
            return t1 - t0, time.perf_counter() - t1
        finally:
            await storage.close()


def main(argv: list[str] | None = None) -> int:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--mb", type=int, default=10)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--stores", type=int, default=3)
    args = parser.parse_args(argv)
    runs = [asyncio.run(one_store(args.mb, args.n)) for _ in range(args.stores)]
    sets, gets = [r[0] for r in runs], [r[1] for r in runs]
    print(
        f"schema v{SCHEMA_VERSION}: {args.n} small writes {statistics.median(sets):.3f} s "
        f"({min(sets):.3f}-{max(sets):.3f}), {args.n} reads {statistics.median(gets):.3f} s "
        f"({min(gets):.3f}-{max(gets):.3f}) beside {args.mb} MB"
    )
    print(
        json.dumps(
            {"schema_version": SCHEMA_VERSION, "mb": args.mb, "n": args.n, "sets_s": sets, "gets_s": gets}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
