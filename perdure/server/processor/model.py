"""The processor's data: invocation records, journal entries, outcomes.

An `Invocation` is kept in memory while it is not completed; its durable form
is a row of the invocation table (the record, encoded by `encode_record`) plus
its journal rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from perdure.protocol.ids import InvocationId
from perdure.record import record

# Raw statuses, as in Restate's sys_invocation_status.
SCHEDULED = "scheduled"
INBOXED = "inboxed"
INVOKED = "invoked"
SUSPENDED = "suspended"
PAUSED = "paused"
READY = "ready"  # admitted but waiting for a concurrency or rate rule to let it start
COMPLETED = "completed"

# Latest instant the store represents: 9999-12-31T23:59:59.999Z. Later wake-up
# times (a huge delay, a bogus invoke_time from a service) are clamped to it.
TIME_MS_MAX = 253_402_300_799_999

SERVICE = "service"
VIRTUAL_OBJECT = "virtual_object"
WORKFLOW = "workflow"


@record
class Target:
    service: str
    handler: str
    key: str | None  # object/workflow key; None for plain services
    service_ty: str  # SERVICE | VIRTUAL_OBJECT | WORKFLOW
    handler_ty: str | None  # "exclusive" | "shared" | "workflow" | None

    @property
    def exclusive(self) -> bool:
        """Whether the handler needs the per-key lock (object exclusive, workflow run)."""
        return self.key is not None and self.handler_ty in ("exclusive", "workflow")

    def __str__(self) -> str:
        if self.key is None:
            return f"{self.service}/{self.handler}"
        return f"{self.service}/{self.key}/{self.handler}"


@record
class Failure:
    code: int
    message: str


@record
class Outcome:
    """Completed result of an invocation: a value or a terminal failure."""

    value: bytes | None = None
    failure: Failure | None = None

    def to_json(self) -> dict[str, Any]:
        if self.failure is not None:
            return {"f": [self.failure.code, self.failure.message]}
        return {"v": (self.value or b"").hex()}

    @staticmethod
    def from_json(d: dict[str, Any]) -> Outcome:
        if "f" in d:
            return Outcome(failure=Failure(d["f"][0], d["f"][1]))
        return Outcome(value=bytes.fromhex(d["v"]))


@dataclass(slots=True)
class Entry:
    """One journal message (command or notification), still encoded."""

    type: int
    body: bytes
    appended_at_ms: int


@record
class CallerRef:
    """Where a callee's result goes: the caller's journal, by completion id."""

    invocation_id: str
    completion_id: int
    notification_type: int = 0x800D  # CallCompletion; attach and promises use their own


@dataclass(slots=True)
class Invocation:
    id: InvocationId
    target: Target
    status: str
    created_at_ms: int
    modified_at_ms: int
    execution_time_ms: int | None = None  # delayed send: not before this
    invoked_by: str = "ingress"  # "ingress" | "service"
    invoked_by_id: str | None = None
    invoked_by_target: str | None = None
    caller: CallerRef | None = None
    idempotency_key: str | None = None
    completion_retention_ms: int = 0
    journal_retention_ms: int = 0
    pinned_deployment_id: str | None = None
    retry_count: int = 0
    next_retry_at_ms: int | None = None
    last_failure: dict[str, Any] | None = None
    last_attempt_deployment_id: str | None = None
    last_attempt_server: str | None = None
    last_start_at_ms: int | None = None
    running_at_ms: int | None = None
    inboxed_at_ms: int | None = None
    completed_at_ms: int | None = None
    trace_parent: str | None = None  # W3C traceparent of the start span: attempts and end are its children
    last_stored_entry_at_ms: int = 0
    retries_since_stored_entry: int = 0
    waiting_completions: list[int] = field(default_factory=list)
    waiting_signals: list[int] = field(default_factory=list)
    outcome: Outcome | None = None
    # Invocations (by id) attached to this one's result: (invocation id, completion id).
    attached: list[CallerRef] = field(default_factory=list)
    journal_length: int = 0  # durable journal length (entries 0..n-1)
    restarted_from: str | None = None  # restart-as-new: the invocation this one restarts
    limit_seq: int = 0  # concurrency/rate rules: its place in the admission queue (0: none)
    # In memory only (not durable):
    journal: list[Entry] = field(default_factory=list)
    completed_ids: set[int] = field(default_factory=set)
    signals_seen: set[int] = field(default_factory=set)
    attempt: int = 0
    attempt_live: bool = False
    waiters: list[int] = field(default_factory=list)  # ingress reply tokens

    @property
    def id_str(self) -> str:
        return str(self.id)

    def is_active(self) -> bool:
        return self.status != COMPLETED

    def commands_count(self) -> int:
        return sum(1 for e in self.journal if 0x0400 <= e.type < 0x8000)


def _ref(r: CallerRef) -> list[Any]:
    return [r.invocation_id, r.completion_id, r.notification_type]


def record_expires_at_ms(inv: Invocation) -> int | None:
    """When the retention sweeper must next look at a record: completed invocations at the end of
    their journal retention while the journal is kept (if that comes first), else at the end of
    their completion (idempotency/workflow) retention. Stores index records by it."""
    if inv.status != COMPLETED or inv.completed_at_ms is None:
        return None
    done = inv.completed_at_ms
    if inv.journal_length > 0 and inv.journal_retention_ms < inv.completion_retention_ms:
        return done + inv.journal_retention_ms
    return done + inv.completion_retention_ms


def encode_record(inv: Invocation) -> bytes:
    """The durable part of an invocation record (journal rows are stored apart)."""
    t = inv.target
    d: dict[str, Any] = {
        "s": t.service,
        "h": t.handler,
        "k": t.key,
        "st": t.service_ty,
        "ht": t.handler_ty,
        "status": inv.status,
        "c": inv.created_at_ms,
        "m": inv.modified_at_ms,
        "x": inv.execution_time_ms,
        "by": inv.invoked_by,
        "byid": inv.invoked_by_id,
        "byt": inv.invoked_by_target,
        "cl": _ref(inv.caller) if inv.caller else None,
        "ik": inv.idempotency_key,
        "cr": inv.completion_retention_ms,
        "jr": inv.journal_retention_ms,
        "pd": inv.pinned_deployment_id,
        "rc": inv.retry_count,
        "nr": inv.next_retry_at_ms,
        "lf": inv.last_failure,
        "lad": inv.last_attempt_deployment_id,
        "las": inv.last_attempt_server,
        "ls": inv.last_start_at_ms,
        "ra": inv.running_at_ms,
        "ia": inv.inboxed_at_ms,
        "ca": inv.completed_at_ms,
        "lse": inv.last_stored_entry_at_ms,
        "rse": inv.retries_since_stored_entry,
        "wc": inv.waiting_completions,
        "ws": inv.waiting_signals,
        "o": inv.outcome.to_json() if inv.outcome else None,
        "at": [_ref(a) for a in inv.attached],
        "jl": inv.journal_length,
        "rf": inv.restarted_from,
        "lq": inv.limit_seq,
        "tp": inv.trace_parent,
    }
    return orjson.dumps(d)


def decode_record(raw_id: bytes, data: bytes) -> Invocation:
    d = orjson.loads(data)
    inv = Invocation(
        id=InvocationId.from_raw(raw_id),
        target=Target(d["s"], d["h"], d["k"], d["st"], d["ht"]),
        status=d["status"],
        created_at_ms=d["c"],
        modified_at_ms=d["m"],
        execution_time_ms=d["x"],
        invoked_by=d["by"],
        invoked_by_id=d["byid"],
        invoked_by_target=d["byt"],
        caller=CallerRef(*d["cl"]) if d["cl"] else None,
        idempotency_key=d["ik"],
        completion_retention_ms=d["cr"],
        journal_retention_ms=d["jr"],
        pinned_deployment_id=d["pd"],
        retry_count=d["rc"],
        next_retry_at_ms=d["nr"],
        last_failure=d["lf"],
        last_attempt_deployment_id=d["lad"],
        last_attempt_server=d["las"],
        last_start_at_ms=d["ls"],
        trace_parent=d.get("tp"),
        running_at_ms=d["ra"],
        inboxed_at_ms=d["ia"],
        completed_at_ms=d["ca"],
        last_stored_entry_at_ms=d["lse"],
        retries_since_stored_entry=d["rse"],
        waiting_completions=d["wc"],
        waiting_signals=d["ws"],
        outcome=Outcome.from_json(d["o"]) if d["o"] else None,
        attached=[CallerRef(*a) for a in d["at"]],
        journal_length=d["jl"],
        restarted_from=d.get("rf"),
        limit_seq=d.get("lq", 0),
    )
    return inv
