"""A write batch: every storage mutation of one processor step, committed in
one transaction and one fsync."""

from __future__ import annotations

from dataclasses import dataclass, field

from perdure.server.processor.commands import Timer


@dataclass(slots=True)
class WriteBatch:
    invocations: dict[bytes, bytes | None] = field(default_factory=dict)  # raw id -> record (None: delete)
    journal: list[tuple[bytes, int, int, bytes, int]] = field(default_factory=list)  # id, idx, type, body, ts
    journal_delete: list[bytes] = field(default_factory=list)
    state_set: list[tuple[str, str, bytes, bytes]] = field(default_factory=list)
    state_delete: list[tuple[str, str, bytes]] = field(default_factory=list)
    state_clear: list[tuple[str, str]] = field(default_factory=list)
    timers_add: list[Timer] = field(default_factory=list)
    timers_delete: list[Timer] = field(default_factory=list)
    locks_set: list[tuple[str, str, bytes]] = field(default_factory=list)
    locks_delete: list[tuple[str, str]] = field(default_factory=list)
    inbox_add: list[tuple[str, str, int, bytes]] = field(default_factory=list)  # svc, key, seq, id
    inbox_delete: list[tuple[str, str, int]] = field(default_factory=list)
    promises: list[tuple[str, str, str, bytes | None]] = field(default_factory=list)  # svc, key, name, record
    promises_clear: list[tuple[str, str]] = field(default_factory=list)  # all promises of a workflow key

    def __bool__(self) -> bool:
        return bool(
            self.invocations
            or self.journal
            or self.journal_delete
            or self.state_set
            or self.state_delete
            or self.state_clear
            or self.timers_add
            or self.timers_delete
            or self.locks_set
            or self.locks_delete
            or self.inbox_add
            or self.inbox_delete
            or self.promises
            or self.promises_clear
        )
