"""The partition processor: a deterministic state machine.

`apply(command, now_ms)` changes in-memory state and records the storage
mutations (a `WriteBatch`) and the effects they cause; `take()` hands both to
the runtime, which commits the batch (one fsync) and only then releases the
effects. No sockets, sleeps or clocks in here: that is what lets a seeded
simulation drive it and crash it anywhere."""

from __future__ import annotations

from perdure.server.processor.commands import (
    Attach,
    AttemptFailed,
    AttemptOpened,
    ChangeRules,
    ChangeSchedule,
    CheckMailbox,
    Command,
    CompleteAwakeable,
    Ingest,
    Invoke,
    ReplaceState,
    RestartAsNew,
    SdkMessage,
    Terminate,
    TimerFired,
)
from perdure.server.processor.core import CANCELLED, EVICTABLE, KILLED, ProcessorConfig
from perdure.server.processor.journal import _COMMAND_HANDLERS
from perdure.server.processor.mailbox import Mailbox
from perdure.server.processor.restart import Restarts
from perdure.server.processor.scheduling import ScheduleCommands

__all__ = ["CANCELLED", "EVICTABLE", "KILLED", "_COMMAND_HANDLERS", "Processor", "ProcessorConfig"]


class Processor(Mailbox, Restarts, ScheduleCommands):
    def apply(self, cmd: Command, now_ms: int) -> None:
        self._now = now_ms
        if isinstance(cmd, SdkMessage):
            self._on_sdk_message(cmd)
        elif isinstance(cmd, Invoke):
            self._on_invoke(cmd)
        elif isinstance(cmd, Ingest):
            self._on_ingest(cmd)
        elif isinstance(cmd, TimerFired):
            if self._loc.owns_id(cmd.timer.invocation):  # else armed before its partition moved
                self._on_timer(cmd.timer)
        elif isinstance(cmd, AttemptFailed):
            self._on_attempt_failed(cmd)
        elif isinstance(cmd, AttemptOpened):
            inv = self._resident.get(cmd.invocation)
            if inv is not None and inv.attempt == cmd.attempt:
                inv.last_attempt_server = cmd.server
        elif isinstance(cmd, Attach):
            self._on_attach(cmd)
        elif isinstance(cmd, CompleteAwakeable):
            self._on_complete_awakeable(cmd)
        elif isinstance(cmd, Terminate):
            self._on_terminate(cmd)
        elif isinstance(cmd, ReplaceState):
            self._on_replace_state(cmd)
        elif isinstance(cmd, RestartAsNew):
            self._on_restart_as_new(cmd)
        elif isinstance(cmd, ChangeRules):
            self._on_change_rules(cmd)
        elif isinstance(cmd, ChangeSchedule):
            self._on_change_schedule(cmd)
        elif isinstance(cmd, CheckMailbox):
            self._on_check_mailbox(cmd)
        else:  # pragma: no cover - exhaustive
            raise AssertionError(f"unknown command {cmd!r}")
