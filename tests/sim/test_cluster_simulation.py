"""The seeded simulation of a cluster (perdure/testing/simulation/cluster.py): several nodes with
leases over one store hold every invariant, a seed replays exactly, the runs really pause, kill,
fence and take over, and each cluster invariant catches a variant broken on purpose (a bug
monkeypatched into the store, the processor or the lease SQL's model; never a flag in production
code)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import pytest

from perdure.protocol.codec import MessageType as T
from perdure.server.processor.effects import ArmTimer, StartAttempt
from perdure.server.processor.mailbox import Mailbox
from perdure.server.processor.model import COMPLETED, INVOKED, Invocation, decode_record
from perdure.server.processor.processor import Processor
from perdure.testing.simulation import SimulationFailure
from perdure.testing.simulation.cluster import ClusterConfig, ClusterStats
from perdure.testing.simulation.leased_store import LeasedMemoryStorage, LeaseRecord, ScopedRecovery
from perdure.testing.simulation.node import SimNode
from perdure.testing.simulation.runner import caught_by, run_cluster_seed

SEEDS = int(os.environ.get("PERDURE_CLUSTER_SIM_SEEDS", "300"))
CONFIG = ClusterConfig(steps=200)
SEEDS_MAX = 200


@pytest.mark.timeout(SEEDS * 0.3 + 60)  # a hang guard: ~70 ms of CPU per seed on a loaded machine
def test_many_cluster_seeds_hold_every_invariant() -> None:
    failures = []
    totals = ClusterStats()
    for seed in range(SEEDS):
        try:
            stats = run_cluster_seed(seed).stats
        except SimulationFailure as f:
            failures.append(f.with_traceback(None))
            continue
        for f in dataclasses.fields(ClusterStats):
            if isinstance(getattr(stats, f.name), int):
                setattr(totals, f.name, getattr(totals, f.name) + getattr(stats, f.name))
    if failures:
        first = failures[0]
        pytest.fail(
            f"{len(failures)} of {SEEDS} seeds failed; first:\n{first}\n" + "\n".join(first.trace[-30:])
        )
    # The runs exercise what they claim to: pauses, kills, fenced batches, takeovers, handovers.
    assert min(totals.pauses, totals.kills, totals.fenced, totals.takeovers, totals.handovers) > 0, totals
    assert totals.timers_fired > 0 and totals.unreachable > 0, totals
    assert totals.mail_rows > 0, totals  # calls and sends between partitions went through the mailbox


def outcome(seed: int) -> str:
    try:
        return run_cluster_seed(seed).fingerprint
    except SimulationFailure as f:
        return f"{f.step} {f.invariant}: {f.detail}"


def test_a_cluster_seed_replays_to_the_same_end() -> None:
    assert outcome(5) == outcome(5)


def caught(invariant: str) -> SimulationFailure:
    """The first seed whose run breaks `invariant`; it must replay identically."""
    return caught_by(invariant, range(SEEDS_MAX), lambda seed: run_cluster_seed(seed, CONFIG))


def test_a_store_without_the_fence_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """perdure_commit's conditional lease write left out: a paused node's batch lands."""
    monkeypatch.setattr(LeasedMemoryStorage, "_fence_holds", lambda *args: True)
    f = caught("a fenced node's commit changes nothing")
    assert "the lease is" in f.detail


def test_an_acquisition_keeping_the_epoch_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """ACQUIRE_SQL without `epoch = epoch + 1`: the next holder writes at the old holder's epoch."""

    def take(self: LeasedMemoryStorage, lease: LeaseRecord, node: str, expires_at_ms: int) -> None:
        lease.owner, lease.epoch, lease.expires_at_ms = node, max(lease.epoch, 1), expires_at_ms

    monkeypatch.setattr(LeasedMemoryStorage, "_take", take)
    f = caught("no two nodes commit to the same partition at the same epoch")
    assert "committed, now" in f.detail


def test_an_adoption_forgetting_timers_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A takeover loads the partition but does not arm its stored timers."""
    adopt = Processor.adopt_partitions

    def forgetful(self: Processor, parts: set[int], recovery: Any, now_ms: int) -> None:
        adopt(self, parts, recovery, now_ms)
        self._effects = [e for e in self._effects if not isinstance(e, ArmTimer)]

    monkeypatch.setattr(Processor, "adopt_partitions", forgetful)
    f = caught("timers of a partition are armed on its owner")
    assert "not armed on its owner" in f.detail


def test_a_drop_keeping_locks_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handing a partition over forgets its invocations but keeps its locks in memory."""
    drop = Processor.drop_partitions

    def leaky(self: Processor, parts: set[int]) -> None:
        locks = dict(self._locks)
        drop(self, parts)
        self._locks.update(locks)

    monkeypatch.setattr(Processor, "drop_partitions", leaky)
    f = caught("no key is left locked")
    assert "holds" in f.detail


def test_an_adoption_restarting_completed_invocations_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adopting node's recovery reads completed invocations as running ones."""
    load_running = ScopedRecovery.load_running

    def with_completed(self: ScopedRecovery) -> list[Invocation]:
        out = load_running(self)
        store = self._store
        for raw, rec in store.invocations.items():
            inv = decode_record(raw, rec)
            if inv.status == COMPLETED and self._mine_id(raw):
                inv.status = INVOKED
                inv.journal = store.get_journal(raw)
                out.append(inv)
        return out

    monkeypatch.setattr(ScopedRecovery, "load_running", with_completed)
    f = caught("every invocation completes exactly once")
    assert "completed with" in f.detail


def test_a_node_keeping_a_lost_partition_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """drop_partitions does nothing: a node that lost a lease keeps acting for its partition."""
    monkeypatch.setattr(Processor, "drop_partitions", lambda self, parts: None)
    f = caught("a node that lost a lease drops its partition")
    assert "its processor covers" in f.detail


def test_an_adoption_not_restarting_running_invocations_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node taking a partition over loads its locks and timers but not its running invocations."""
    monkeypatch.setattr(ScopedRecovery, "load_running", lambda self: [])
    f = caught("every invocation completes")
    assert "nothing left to wake it" in f.detail


def _drop_run_completions(monkeypatch: pytest.MonkeyPatch) -> None:
    append = Processor._append

    def dropping(self: Processor, inv: Invocation, msg_type: int, body: bytes) -> None:
        append(self, inv, msg_type, body)
        if msg_type == T.RUN_COMPLETION:
            self._batch.journal.pop()

    monkeypatch.setattr(Processor, "_append", dropping)


def _forget_run_results(monkeypatch: pytest.MonkeyPatch) -> None:
    start = Processor._start_attempt

    def forgetful(self: Processor, inv: Invocation) -> None:
        start(self, inv)
        e = self._effects[-1] if self._effects else None
        if isinstance(e, StartAttempt):
            kept = tuple(x for x in e.journal if x.type != T.RUN_COMPLETION)
            self._effects[-1] = dataclasses.replace(e, journal=kept)

    monkeypatch.setattr(Processor, "_start_attempt", forgetful)


def _empty_eager_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Processor, "_eager_state", lambda self, *args: ((), False))


@pytest.mark.parametrize(
    ("bug", "invariant"),
    [
        (_drop_run_completions, "journals are contiguous, each index written once"),
        (_forget_run_results, "an acknowledged run never executes again"),
        (_empty_eager_state, "Counter values equal the number of completed adds"),
    ],
)
def test_single_node_invariants_hold_across_the_cluster(
    monkeypatch: pytest.MonkeyPatch, bug: Callable[[pytest.MonkeyPatch], None], invariant: str
) -> None:
    """The single-node checker sees every node: a processor bug breaks the same invariant here."""
    bug(monkeypatch)
    caught(invariant)


def test_a_processor_that_applies_a_mailbox_row_twice_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The rows already applied in the batch being built are not remembered: a row read by a
    check and again by an adoption (or a second check) in one batch is applied twice."""
    real = Mailbox._take_mail

    def forgetful(self: Mailbox, parts: list[int]) -> int:
        self._mail_taken.clear()
        return real(self, parts)

    monkeypatch.setattr(Mailbox, "_take_mail", forgetful)
    monkeypatch.setattr(SimNode, "mail_waiting", _always_when_rows)
    caught("every mailbox row is applied once")


def _always_when_rows(self: SimNode) -> bool:
    box = self.cluster.storage.mailbox
    return any(box.get(p) for p in self.processor.owned_partitions())


def test_a_node_that_never_checks_its_mailbox_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """No mailbox task (no NOTIFY, no poll): rows wait until their partition is adopted again."""
    monkeypatch.setattr(SimNode, "mail_waiting", lambda self: False)
    f = caught("every mailbox row is delivered")
    assert "rows left" in f.detail
