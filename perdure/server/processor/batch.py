"""A write batch: every storage mutation of one processor step, committed in
one transaction and one fsync.

Keyed mutations (state, locks, inbox, promises) are kept as ONE ordered list
of operations: a key set then cleared, a lock taken then released, an inbox
row added then consumed within one batch must end as the last operation left
them, so stores apply `ops` strictly in order."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from perdure.record import record
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import Invocation, record_expires_at_ms


class Op(IntEnum):
    STATE_SET = 1  # (service, key, state key, value)
    STATE_DELETE = 2  # (service, key, state key)
    STATE_CLEAR = 3  # (service, key)
    LOCK_SET = 4  # (service, key, invocation id)
    LOCK_DELETE = 5  # (service, key)
    INBOX_ADD = 6  # (service, key, seq, invocation id)
    INBOX_DELETE = 7  # (service, key, seq)
    PROMISE_PUT = 8  # (service, key, name, record)
    PROMISE_CLEAR = 9  # (service, key): all promises of a workflow key
    RULE_PUT = 10  # (pattern, record): a concurrency/rate rule (keeps its bucket)
    RULE_DELETE = 11  # (pattern)
    RULE_TAT = 12  # (pattern, tat_us): the rule's token bucket (theoretical arrival time)
    LIMIT_PUT = 13  # (invocation id, seq, running 0/1, service, handler, key): held by a rule
    LIMIT_DELETE = 14  # (invocation id)
    SCHEDULE_PUT = 15  # (name, record)
    SCHEDULE_DELETE = 16  # (name)
    DEDUP_SET = 17  # (producer, offset): highest ingested offset of a record stream


@record
class InvocationIndex:
    """The indexed columns of an invocation record, so a store need not parse
    the record (which holds the output: megabytes for a big result) to index it."""

    status: str
    service: str
    key: str | None
    created_at_ms: int
    expires_at_ms: int | None  # model.record_expires_at_ms


def index_of(inv: Invocation) -> InvocationIndex:
    expires = record_expires_at_ms(inv)
    return InvocationIndex(inv.status, inv.target.service, inv.target.key, inv.created_at_ms, expires)


@dataclass(slots=True)
class WriteBatch:
    invocations: dict[bytes, bytes | None] = field(default_factory=dict)  # raw id -> record (None: delete)
    index: dict[bytes, InvocationIndex] = field(default_factory=dict)  # of every record in `invocations`
    journal: list[tuple[bytes, int, int, bytes, int]] = field(default_factory=list)  # id, idx, type, body, ts
    journal_delete: list[bytes] = field(default_factory=list)  # applied before `journal`
    timers_add: list[Timer] = field(default_factory=list)
    timers_delete: list[Timer] = field(default_factory=list)
    ops: list[tuple[Op, tuple[Any, ...]]] = field(default_factory=list)
    # The partition mailbox (processor/mailbox.py; only ever filled on a cluster node): rows for
    # partitions this node does not own, (target partition, mail.encode(...)) in send order, and
    # the rows this batch applied, (partition, seq), deleted in the same transaction.
    outbox: list[tuple[int, bytes]] = field(default_factory=list)
    mail_done: list[tuple[int, int]] = field(default_factory=list)

    def op(self, kind: Op, *args: Any) -> None:
        self.ops.append((kind, args))

    def __bool__(self) -> bool:
        return bool(
            self.invocations
            or self.journal
            or self.journal_delete
            or self.timers_add
            or self.timers_delete
            or self.ops
            or self.outbox
            or self.mail_done
        )
