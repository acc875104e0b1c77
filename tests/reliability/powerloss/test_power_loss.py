"""Power loss: an acknowledged write of the Perdure server survives losing everything that was
not fsync'd, and the database it leaves reopens sound.

A recorder preloaded into `perdure server` (shim.c) logs every write and fsync of its data
directory. The server takes seeded load from official-SDK services and is SIGKILLed; the disk a
power loss at seeded points of that history (and at the kill) could leave is rebuilt from the
snapshot and the log (only synced writes; a random subset of the unsynced ones; torn unsynced
writes), checked with SQLite
(`PRAGMA integrity_check`, every acknowledged invocation stored), and Perdure is started on it
to finish every stored invocation. See README.md.

POWERLOSS_SEED=N replays one seed; POWERLOSS_RUNS=K runs K random seeds (default 2);
POWERLOSS_POINTS=P checks P crash points of each kind per run (default 8).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.reliability.powerloss.check import check_image
from tests.reliability.powerloss.crash import CrashRun, crash_run
from tests.reliability.powerloss.disk import (
    POLICIES,
    crash_image,
    lost_write,
    lying_fsync,
    page_cache_mismatch,
    timeline,
    write_image,
)
from tests.reliability.powerloss.fslog import Op
from tests.reliability.powerloss.recorder import RecorderUnavailable, build_recorder
from tests.reliability.powerloss.recovery import recover_and_check
from tests.reliability.powerloss.verify import check_point
from tests.support.servers import PerdureServer
from tests.support.services import PythonService

SEED_ENV = "POWERLOSS_SEED"
RUNS_ENV = "POWERLOSS_RUNS"
DEFAULT_RUNS = 2
LOAD_CONCURRENCY = 8
DB = "perdure.sqlite3"
WAL = "perdure.sqlite3-wal"
LOST_WRITE_CANDIDATES = 5
POINTS_ENV = "POWERLOSS_POINTS"
DEFAULT_POINTS_PER_KIND = 8
RECOVERED_POINTS = 2


def points_per_kind() -> int:
    return int(os.environ.get(POINTS_ENV, DEFAULT_POINTS_PER_KIND))


def time_budget_s() -> float:
    """A hang guard, not a speed bound: a run takes ~3 s plus ~0.3 s per crash point on a quiet
    machine, several times that on a loaded one."""
    return 120 + run_count() * (30 + 4 * points_per_kind())


def run_count() -> int:
    return 1 if os.environ.get(SEED_ENV) else int(os.environ.get(RUNS_ENV, DEFAULT_RUNS))


def seeds() -> list[int]:
    """Random seeds, alternately even (the run starts from an empty directory) and odd (from
    one a cleanly stopped server left)."""
    if os.environ.get(SEED_ENV):
        return [int(os.environ[SEED_ENV])]
    return [random.randrange(2**31) * 2 + i % 2 for i in range(run_count())]


def starts_empty(seed: int) -> bool:
    return seed % 2 == 0


@pytest.fixture(scope="module")
def recorder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        return build_recorder(tmp_path_factory.mktemp("recorder"))
    except RecorderUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PythonService]:
    logs = tmp_path_factory.mktemp("powerloss-service")
    with PythonService("tests.compat.services.core", "app", log_dir=logs) as svc:
        yield svc


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory as a freshly started and cleanly stopped Perdure leaves it."""
    data = tmp_path_factory.mktemp("powerloss-template") / "data"
    server = PerdureServer(data)
    server.start()
    server.stop()
    return data


@pytest.fixture(scope="module")
def empty(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty data directory: the server creates its database during the recorded run."""
    return tmp_path_factory.mktemp("powerloss-empty")


@pytest.fixture(scope="module")
def sequential_run(
    tmp_path_factory: pytest.TempPathFactory, template: Path, service: PythonService, recorder: Path
) -> CrashRun:
    """One crash under load from a single client, so each ack's window holds only its own writes."""
    seed = seeds()[0]
    print(f"power loss (sequential) seed {seed} (replay with {SEED_ENV}={seed})")
    run_dir = tmp_path_factory.mktemp("powerloss-sequential")
    run = asyncio.run(crash_run(seed, template, run_dir, service.url, recorder, concurrency=1))
    print(run.summary())
    return run


async def _check_run(run: CrashRun) -> tuple[list[str], str]:
    """Every crash point of a run under every policy; recovery on a few. Problems and a summary."""
    rng = random.Random(run.seed)
    points = run.crash_points(rng, points_per_kind())
    recover_at = {points[-1], *rng.sample(points[:-1], min(RECOVERED_POINTS, len(points) - 1))}
    problems: list[str] = []
    unsynced = recovered = 0
    for point in points:
        for policy in POLICIES:
            result = check_point(run, point, policy, run.run_dir / "image")
            found = result.verdict.problems
            if not found and point in recover_at and (point == points[-1] or policy == "torn"):
                stored = result.verdict.stored
                found = await recover_and_check(result.image_dir, stored, run.requests, result.acks)
                recovered += 1
            unsynced += result.unsynced
            if found:
                kept = run.run_dir / f"failed-{point}-{policy}"
                shutil.copytree(result.image_dir, kept)
                problems += [f"{result.describe(run)}, image {kept}: {p}" for p in found]
    summary = (
        f"  {len(points)} crash points x {len(POLICIES)} policies checked ({unsynced} unsynced "
        f"mutations at stake in all), {recovered} images recovered by a restarted server, "
        f"{len(problems)} problems"
    )
    return problems, summary


@pytest.mark.timeout(time_budget_s())
async def test_acknowledged_writes_survive_power_loss_and_the_database_reopens_sound(
    tmp_path: Path, template: Path, empty: Path, service: PythonService, recorder: Path
) -> None:
    problems: list[str] = []
    for seed in seeds():
        start = empty if starts_empty(seed) else template
        print(f"power loss seed {seed} from {'an empty' if starts_empty(seed) else 'a used'} data dir")
        print(f"  (replay with {SEED_ENV}={seed})")
        run_dir = tmp_path / f"seed-{seed}"
        run = await crash_run(seed, start, run_dir, service.url, recorder, LOAD_CONCURRENCY)
        print(run.summary())
        assert len(run.acks) >= run.kill_after_acks, run.summary()
        live = {n: c for n, c in run.live.items() if not n.endswith("-shm")}
        mismatch = page_cache_mismatch(timeline(run.snapshot, run.records), live)
        assert mismatch is None, f"the recorder missed a write: {mismatch} ({run.summary()})"
        found, summary = await _check_run(run)
        print(summary)
        problems += found
    assert not problems, "\n".join(problems[:40])


# --- the checker has teeth: a broken disk, losing writes it had flushed, is caught --------------


def test_a_disk_that_acknowledges_flushes_it_never_did_is_caught(sequential_run: CrashRun) -> None:
    run = sequential_run
    baseline = check_point(run, run.records[-1].seq, "synced-only", run.run_dir / "baseline")
    assert baseline.verdict.problems == [], baseline.verdict.problems
    last = max(run.acks, key=lambda a: a.acked_ns)
    cutoff = min((r.seq for r in run.records if r.t_ns > last.sent_ns), default=None)
    assert cutoff is not None, "nothing was written after the last acknowledged request was sent"
    image = crash_image(timeline(run.snapshot, run.records), lying_fsync(cutoff), random.Random(0))
    write_image(image, run.run_dir / "image-lying-fsync")
    verdict = check_image(run.run_dir / "image-lying-fsync", run.run_dir / "s1", run.acks, run.deployment_id)
    print(f"lying fsync from seq {cutoff}: {verdict.problems}")
    assert any(last.invocation_id in p and "missing" in p for p in verdict.problems), verdict.problems


def test_a_single_lost_synced_write_is_caught(sequential_run: CrashRun) -> None:
    """Drop the first synced WAL write of each of the last requests (its own first commit: the
    client was alone). WAL checksums then end the log before it, so the request is lost, unless
    a checkpoint later copied that page into the database file from the page cache."""
    run = sequential_run
    tl = timeline(run.snapshot, run.records)
    wal_writes = [r for r in tl.mutations if r.op is Op.WRITE and r.name == WAL and r.seq in tl.synced]
    db_writes = [r.seq for r in tl.mutations if r.op is Op.WRITE and r.name == DB]
    missed: list[str] = []
    for ack in sorted(run.acks, key=lambda a: a.acked_ns)[-LOST_WRITE_CANDIDATES:]:
        first = next((w for w in wal_writes if w.t_ns > ack.sent_ns), None)
        assert first is not None and first.t_ns < ack.acked_ns, f"no synced write for {ack.request.rid}"
        image_dir = run.run_dir / f"image-lost-{first.seq}"
        write_image(crash_image(tl, lost_write(first.seq), random.Random(0)), image_dir)
        verdict = check_image(image_dir, run.run_dir / "s2", run.acks, run.deployment_id)
        checkpointed = any(seq > first.seq for seq in db_writes)
        print(f"lost synced write {first.seq} ({ack.request.rid}, checkpointed after: {checkpointed}):")
        print("\n".join(f"  {p}" for p in verdict.problems[:3]))
        if not checkpointed and not any(ack.invocation_id in p for p in verdict.problems):
            missed.append(f"{ack.request.rid}: write {first.seq}")
    assert not missed, f"a lost synced WAL write went unnoticed: {missed}"


def test_an_answer_sent_before_its_commit_was_synced_would_be_caught(sequential_run: CrashRun) -> None:
    """The crash points must catch a server that answers early: move each of the last acks back
    to just after its first WAL write (before the fsync that made it durable) and cut there."""
    run = sequential_run
    tl = timeline(run.snapshot, run.records)
    wal_writes = [r for r in tl.mutations if r.op is Op.WRITE and r.name == WAL]
    missed: list[str] = []
    for ack in sorted(run.acks, key=lambda a: a.acked_ns)[-LOST_WRITE_CANDIDATES:]:
        first = next(w for w in wal_writes if w.t_ns > ack.sent_ns)
        early = dataclasses.replace(run, acks=[dataclasses.replace(ack, acked_ns=first.t_ns + 1)])
        result = check_point(early, first.seq, "synced-only", run.run_dir / f"image-early-{first.seq}")
        print(f"{ack.request.rid} answered at write {first.seq}: {result.verdict.problems}")
        if not any(ack.invocation_id in p and "missing" in p for p in result.verdict.problems):
            missed.append(ack.request.rid)
    assert not missed, f"an answer sent before its commit was synced went unnoticed: {missed}"
