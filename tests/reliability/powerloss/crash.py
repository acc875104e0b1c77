"""One recorded crash: Perdure runs under the recorder on a copy of a template data directory,
takes seeded load, and is SIGKILLed at a seeded moment (after a seeded number of acks).

What a power loss at that moment leaves is then a pure function of the snapshot, the log and a
fault policy (see disk.py), so any image can be rebuilt from the kept run directory.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path

from tests.reliability.powerloss.disk import read_snapshot
from tests.reliability.powerloss.fslog import Op, Record, read_log
from tests.reliability.powerloss.recorder import recorder_env
from tests.reliability.powerloss.workload import Ack, Request, drive, load_acks, plan, save_acks
from tests.support.client import register
from tests.support.servers import PerdureServer

PLANNED_REQUESTS = 4000
ACKS_BEFORE_KILL_MIN = 20
ACKS_BEFORE_KILL_MAX = 250
KILL_JITTER_S_MAX = 0.03
LOAD_DEADLINE_S = 30.0
POLL_S = 0.002
DB_FILE = "perdure.sqlite3"
WAL_FILE = "perdure.sqlite3-wal"
SNAPSHOT_DIR = "snapshot"
LOG_FILE = "recorder.log"
ACKS_FILE = "acks.json"
RUN_FILE = "run.json"


@dataclass(frozen=True, slots=True)
class CrashRun:
    seed: int
    run_dir: Path
    data_dir: Path
    snapshot: dict[str, bytes]  # the data directory before the recorded server started
    live: dict[str, bytes]  # what the killed server left in the page cache
    records: list[Record]
    requests: list[Request]
    acks: list[Ack]
    deployment_id: str
    registered_ns: int
    kill_after_acks: int

    def cut(self, seq: int) -> tuple[list[Record], list[Ack], str | None]:
        """A power loss right after record `seq`: the log up to it, the acks a client held by then
        (before the next record; an ack is sent only after the SYNC record that made it durable,
        so that record is in the cut) and the deployment id if its registration was answered."""
        records = [r for r in self.records if r.seq <= seq]
        later = [r.t_ns for r in self.records if r.seq > seq]
        until_ns = min(later) if later else None
        acks = [a for a in self.acks if until_ns is None or a.acked_ns < until_ns]
        registered = until_ns is None or self.registered_ns < until_ns
        return records, acks, self.deployment_id if registered else None

    def crash_points(self, rng: random.Random, per_kind: int) -> list[int]:
        """Seeded seqs to cut at: anywhere; with a commit's WAL frames written but not yet synced;
        in the middle of a checkpoint (database file written, not yet synced); the last moment
        before an ack reached its client (the tightest test of that ack). Then the kill."""
        times = [r.t_ns for r in self.records]
        kinds = [
            [r.seq for r in self.records],
            [r.seq - 1 for r in self.records if r.op is Op.SYNC and r.name == WAL_FILE],
            [r.seq for r in self.records if r.op is Op.WRITE and r.name == DB_FILE],
            [self.records[i - 1].seq for i in (bisect_left(times, a.acked_ns) for a in self.acks) if i],
        ]
        points: set[int] = set()
        for kind in kinds:
            points.update(rng.sample(kind, min(per_kind, len(kind))))
        last = self.records[-1].seq if self.records else 0
        return [*sorted(points - {last}), last]

    def summary(self) -> str:
        writes = sum(1 for r in self.records if r.is_mutation)
        syncs = len(self.records) - writes
        return (
            f"seed {self.seed}: killed after {len(self.acks)} acks (planned {self.kill_after_acks}), "
            f"{writes} mutations and {syncs} barriers recorded, run dir {self.run_dir}"
        )


async def _kill_when_acked(server: PerdureServer, acks: list[Ack], count: int, jitter_s: float) -> None:
    async with asyncio.timeout(LOAD_DEADLINE_S):
        while len(acks) < count:
            await asyncio.sleep(POLL_S)
    await asyncio.sleep(jitter_s)
    server.kill()


async def crash_run(
    seed: int, template: Path, run_dir: Path, service_url: str, recorder: Path, concurrency: int
) -> CrashRun:
    """Run, load and SIGKILL a recorded server; everything it left is under `run_dir`."""
    rng = random.Random(seed)
    kill_after = rng.randint(ACKS_BEFORE_KILL_MIN, ACKS_BEFORE_KILL_MAX)
    jitter_s = rng.uniform(0, KILL_JITTER_S_MAX)
    requests = plan(seed, PLANNED_REQUESTS)
    data_dir = (run_dir / "data").resolve()
    shutil.copytree(template, data_dir)
    shutil.copytree(template, run_dir / SNAPSHOT_DIR)
    log_path = run_dir / LOG_FILE
    server = PerdureServer(data_dir)
    server.env.update(recorder_env(recorder, data_dir, log_path))
    acks: list[Ack] = []
    try:
        server.start()
        deployment_id = register(server.admin_url, service_url)
        registered_ns = time.monotonic_ns()
        async with asyncio.TaskGroup() as tg:
            load = tg.create_task(drive(server.ingress_url, requests, concurrency, acks))
            await _kill_when_acked(server, acks, kill_after, jitter_s)
            load.cancel()
    finally:
        server.kill()
    save_acks(run_dir / ACKS_FILE, acks)
    facts = {
        "seed": seed,
        "deployment_id": deployment_id,
        "registered_ns": registered_ns,
        "kill_after_acks": kill_after,
    }
    (run_dir / RUN_FILE).write_text(json.dumps(facts))
    return load_run(run_dir)


def load_run(run_dir: Path) -> CrashRun:
    """A recorded crash from what `crash_run` left in its directory."""
    facts = json.loads((run_dir / RUN_FILE).read_text())
    data_dir = (run_dir / "data").resolve()
    return CrashRun(
        facts["seed"],
        run_dir,
        data_dir,
        read_snapshot(run_dir / SNAPSHOT_DIR),
        read_snapshot(data_dir),
        read_log(run_dir / LOG_FILE, data_dir),
        plan(facts["seed"], PLANNED_REQUESTS),
        load_acks(run_dir / ACKS_FILE),
        facts["deployment_id"],
        facts["registered_ns"],
        facts["kill_after_acks"],
    )
