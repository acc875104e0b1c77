"""Each invariant of the simulation catches a processor broken on purpose.

Every test monkeypatches one bug into the Processor (never a flag in
production code), searches seeds for the first run that breaks the expected
invariant, and replays that seed to the very same failure."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.server.processor import processor as processor_module
from perdure.server.processor.commands import TIMER_DELAYED_INVOKE, TIMER_SLEEP, Timer
from perdure.server.processor.effects import ArmTimer, StartAttempt
from perdure.server.processor.model import COMPLETED, INVOKED, Invocation
from perdure.server.processor.processor import KILLED, Processor
from perdure.testing.simulation import SimConfig, SimulationFailure, run_seed
from perdure.testing.simulation.runner import caught_by

CONFIG = SimConfig(steps=200)
SEEDS_MAX = 150


def caught(invariant: str) -> SimulationFailure:
    """The first seed whose run breaks `invariant`; it must replay identically."""
    return caught_by(invariant, range(SEEDS_MAX), lambda seed: run_seed(seed, CONFIG))


def patch(monkeypatch: pytest.MonkeyPatch, name: str, make: Callable[[Any], Any]) -> None:
    """Replace Processor.<name> with make(original)."""
    monkeypatch.setattr(Processor, name, make(getattr(Processor, name)))


def patch_after(monkeypatch: pytest.MonkeyPatch, name: str, then: Callable[..., None]) -> None:
    """Processor.<name> runs as before, then `then(self, *args)` breaks something."""

    def make(original: Any) -> Any:
        def broken(self: Processor, *args: Any) -> Any:
            result = original(self, *args)
            then(self, *args)
            return result

        return broken

    patch(monkeypatch, name, make)


def test_effects_released_before_their_commit_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """take() hands out the previous batch with the current effects: a group-commit off-by-one."""

    def make(take: Any) -> Any:
        def lagging(self: Processor) -> Any:
            batch, effects = take(self)
            previous = getattr(self, "_sim_lagged", type(batch)())
            self._sim_lagged = batch  # type: ignore[attr-defined]
            return previous, effects

        return lagging

    patch(monkeypatch, "take", make)
    f = caught("no effect is released before its batch is durable")
    assert "not in storage" in f.detail or "before its record was stored" in f.detail


def test_a_dropped_journal_append_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def make(append: Any) -> Any:
        def dropping(self: Processor, inv: Invocation, msg_type: int, body: bytes) -> None:
            append(self, inv, msg_type, body)
            if msg_type == T.RUN_COMPLETION:
                self._batch.journal.pop()

        return dropping

    patch(monkeypatch, "_append", make)
    f = caught("journals are contiguous, each index written once")
    assert "record says" in f.detail or "next free is" in f.detail


def test_rerunning_an_acknowledged_step_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarts forget run results: the SDK executes an acknowledged side effect again."""

    def forget_run_results(self: Processor, inv: Invocation) -> None:
        e = self._effects[-1] if self._effects else None
        if isinstance(e, StartAttempt):
            kept = tuple(x for x in e.journal if x.type != T.RUN_COMPLETION)
            self._effects[-1] = dataclasses.replace(e, journal=kept)

    patch_after(monkeypatch, "_start_attempt", forget_run_results)
    f = caught("an acknowledged run never executes again")
    assert "its result was acknowledged" in f.detail


def test_a_skipped_lock_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def make(_: Any) -> Any:
        def admit_without_lock(self: Processor, inv: Invocation) -> None:
            inv.status = INVOKED
            self._touch(inv)
            self._start_attempt(inv)

        return admit_without_lock

    patch(monkeypatch, "_admit", make)
    f = caught("one exclusive handler per key runs at a time")
    assert "while" in f.detail


def test_inbox_order_lost_across_a_crash_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def reverse_inboxes(self: Processor, recovery: Any, now_ms: int) -> None:
        for queue in self._inbox.values():
            queue.reverse()

    patch_after(monkeypatch, "recover", reverse_inboxes)
    f = caught("calls on one key run in the order they were accepted")
    assert "accepted earlier" in f.detail


def test_timers_firing_early_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def early_sleep(self: Processor, inv: Invocation, msg: Any) -> None:
        self._add_timer(Timer(msg.wake_up_time - 100, inv.id.raw, TIMER_SLEEP, msg.result_completion_id))

    monkeypatch.setitem(processor_module._COMMAND_HANDLERS, T.SLEEP, early_sleep)
    f = caught("timers never fire early")
    assert "ms early" in f.detail


def test_a_sleep_completed_twice_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def complete_again(self: Processor, timer: Timer) -> None:
        inv = self._resident.get(timer.invocation)
        if timer.kind == TIMER_SLEEP and inv is not None and inv.status != COMPLETED:
            n = pb.NotificationMessage(completion_id=timer.arg, void=pb.Void())
            self._append(inv, T.SLEEP_COMPLETION, n.SerializeToString())

    patch_after(monkeypatch, "_on_timer", complete_again)
    f = caught("each completion is journaled once")
    assert "journaled again" in f.detail


def test_recovery_losing_an_acknowledged_entry_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Recovery rewrites running journals without their last entry."""

    def truncate(self: Processor, recovery: Any, now_ms: int) -> None:
        for raw, inv in self._resident.items():
            if len(inv.journal) > 1:
                inv.journal.pop()
                inv.journal_length -= 1
                self._batch.journal_delete.append(raw)
                for i, e in enumerate(inv.journal):
                    self._batch.journal.append((raw, i, e.type, e.body, e.appended_at_ms))
                self._touch(inv)
        self._effects = [
            dataclasses.replace(e, journal=tuple(self._resident[e.invocation].journal))
            if isinstance(e, StartAttempt)
            else e
            for e in self._effects
        ]

    patch_after(monkeypatch, "recover", truncate)
    f = caught("no acknowledged entry is lost")
    assert "acknowledged, now None" in f.detail


def test_a_lost_delayed_send_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """The delayed-invocation timer is armed in memory but never stored: a crash loses it."""

    def make(add_timer: Any) -> Any:
        def volatile(self: Processor, timer: Timer) -> None:
            if timer.kind == TIMER_DELAYED_INVOKE:
                self._effects.append(ArmTimer(timer))
                return
            add_timer(self, timer)

        return volatile

    patch(monkeypatch, "_add_timer", make)
    f = caught("every invocation completes")
    assert "scheduled" in f.detail


def test_stale_eager_state_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start messages carry an empty (but complete-looking) state map."""

    def empty(self: Processor, *args: Any) -> tuple[tuple[tuple[bytes, bytes], ...], bool]:
        return (), False

    monkeypatch.setattr(Processor, "_eager_state", empty)
    caught("Counter values equal the number of completed adds")


def test_fired_timers_left_in_storage_are_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    def keep_timer(self: Processor, timer: Timer) -> None:
        self._batch.timers_delete.remove(timer)

    patch_after(monkeypatch, "_on_timer", keep_timer)
    caught("no timer is left")


def test_a_lock_never_released_in_memory_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A killed holder's lock is deleted from storage but kept in memory."""

    def make(release: Any) -> Any:
        def leaking(self: Processor, inv: Invocation) -> None:
            t = inv.target
            held = self._locks.get((t.service, t.key)) if t.key is not None else None
            release(self, inv)
            if held == inv.id.raw and inv.outcome is not None and inv.outcome.failure == KILLED:
                self._locks.setdefault((t.service, t.key), held)  # type: ignore[arg-type]

        return leaking

    patch(monkeypatch, "_release_lock", make)
    f = caught("no key is left locked")
    assert "locks" in f.detail
