"""Effects: what the processor asks the world to do, released only after the
batch that produced them is durable."""

from __future__ import annotations

from typing import Any

from perdure.record import record
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import Entry, Failure, Outcome, Target


@record
class Reply:
    """Answer to an ingress/admin request token."""

    token: int
    kind: str  # "outcome" | "accepted" | "error" | "ok"
    invocation_id: str | None = None
    outcome: Outcome | None = None
    status: str | None = None  # "Accepted" | "PreviouslyAccepted"
    execution_time_ms: int | None = None
    expires_at_ms: int | None = None  # idempotency-expires
    code: int = 200
    message: str = ""
    source: str = "invocation"  # who the error is attributed to: "ingress" | "invocation"
    data: Any = None  # an admin answer's body (rules written, patterns removed)


@record
class StartAttempt:
    invocation: bytes
    invocation_id: str
    attempt: int
    target: Target
    deployment_id: str
    journal: tuple[Entry, ...]
    state: tuple[tuple[bytes, bytes], ...]
    partial_state: bool
    retry_count_since_last_stored_entry: int
    duration_since_last_stored_entry_ms: int
    random_seed: int
    inactivity_timeout_ms: int
    abort_timeout_ms: int
    trace_parent: str | None = None


@record
class SendToAttempt:
    invocation: bytes
    attempt: int
    type: int
    body: bytes


@record
class AbortAttempt:
    """Stop the attempt's stream (kill: RST_STREAM CANCEL)."""

    invocation: bytes
    attempt: int


@record
class ArmTimer:
    timer: Timer


@record
class Completed:
    """An invocation completed (for telemetry: per-handler outcomes, durations, end spans)."""

    invocation_id: str
    target: Target
    failure: Failure | None
    created_at_ms: int
    completed_at_ms: int
    trace_parent: str | None = None


Effect = Reply | StartAttempt | SendToAttempt | AbortAttempt | ArmTimer | Completed
