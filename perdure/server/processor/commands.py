"""Commands: every fact the processor learns. Plain frozen data, so a
simulation can generate, log and replay them."""

from __future__ import annotations

from dataclasses import dataclass

from perdure.protocol.ids import AwakeableRef
from perdure.record import record
from perdure.server.processor.model import Failure, Target
from perdure.server.processor.schedules import Schedule


@record
class InvokeRequest:
    target: Target
    input: bytes
    headers: tuple[tuple[str, str], ...] = ()
    idempotency_key: str | None = None
    execution_time_ms: int | None = None  # delayed send
    idempotency_retention_ms: int = 86_400_000
    workflow_retention_ms: int = 86_400_000
    journal_retention_ms: int = 86_400_000
    trace_parent: str | None = None  # W3C traceparent of the invocation's start span


@record
class Invoke:
    """From the ingress. `mode` "send" replies once the invocation is durable;
    "call" replies with its outcome."""

    request: InvokeRequest
    token: int
    mode: str  # "call" | "send"


@record
class Ingest:
    """From a subscription's consumer: one Kafka record to become an invocation, at most once per
    (producer, offset). `producer` names the stream of offsets (subscription, group, topic,
    partition); records of one producer arrive in offset order, so a high-water mark dedups them."""

    request: InvokeRequest
    producer: str
    offset: int
    subscription_id: str
    token: int


@record
class SdkMessage:
    """One protocol message streamed by the service during attempt `attempt`."""

    invocation: bytes  # raw id
    attempt: int
    type: int
    body: bytes


@record
class AttemptFailed:
    """The attempt ended without End/Suspension (transport error, non-2xx,
    timeout, stream closed early), or the SDK sent an ErrorMessage (then the
    fields come from it)."""

    invocation: bytes
    attempt: int
    code: int
    message: str
    stacktrace: str = ""
    related_command_index: int | None = None
    related_command_name: str | None = None
    related_command_type: int | None = None
    next_retry_delay_ms: int | None = None
    server: str | None = None


@record
class AttemptOpened:
    """The service answered the attempt's request (its identification header)."""

    invocation: bytes
    attempt: int
    server: str | None


@dataclass(frozen=True, slots=True, order=True)
class Timer:
    wake_at_ms: int
    invocation: bytes
    kind: int  # TIMER_* below
    arg: int = 0


TIMER_SLEEP = 1  # arg: completion id
TIMER_RETRY = 2  # arg: unused
TIMER_DELAYED_INVOKE = 3
TIMER_CLEANUP = 4  # completion retention ran out: purge
TIMER_SCHEDULE = 6  # a schedule's next tick (invocation: schedules.timer_id(name))
TIMER_ADMIT = 5  # a rate rule's next token: start what waits for it (invocation: ADMIT_TIMER_ID)


@record
class TimerFired:
    timer: Timer


@record
class LookupTarget:
    """How attach/output name an invocation: by id, idempotency key or workflow key."""

    invocation_id: str | None = None
    service: str | None = None
    key: str | None = None
    handler: str | None = None
    idempotency_key: str | None = None


@record
class Attach:
    raw_id: bytes
    token: int
    wait: bool  # attach waits for completion; output answers at once


@record
class CompleteAwakeable:
    awakeable: AwakeableRef
    value: bytes | None
    failure: Failure | None
    token: int


@record
class Terminate:
    """Admin: cancel (graceful, compensation runs), kill (immediate), purge."""

    raw_id: bytes
    mode: str  # "cancel" | "kill" | "purge" | "purge_journal" | "pause" | "resume" | "expire"
    token: int


@record
class ReplaceState:
    """Admin: replace all state of an object/workflow key."""

    service: str
    key: str
    state: tuple[tuple[bytes, bytes], ...]
    token: int


@record
class RestartAsNew:
    """Admin: a completed invocation again as a new one with the same input, optionally keeping
    its journal up to entry `from_index` (included) and the completions of the commands there."""

    raw_id: bytes
    from_index: int | None
    deployment: str | None  # "keep" | "latest" | a deployment id | None (latest)
    token: int


@record
class RuleChange:
    """One entry of a PUT /limits/rules batch (the rule's full body) or of a bulk delete."""

    pattern: str
    delete: bool = False
    concurrency: int | None = None
    rate_per_s: float | None = None
    burst: int | None = None
    description: str | None = None
    disabled: bool = False
    precondition: str = "none"  # "none" | "matches" | "does_not_exist"
    expected_version: int | None = None


@record
class ChangeRules:
    """Admin: upsert or delete concurrency/rate rules, all or none (`/limits/rules`)."""

    changes: tuple[RuleChange, ...]
    token: int


@record
class ChangeSchedule:
    """Admin: put, delete, pause, resume, get or list schedules."""

    action: str  # "put" | "delete" | "pause" | "resume" | "get" | "list" | "declare"
    name: str  # "declare": the service whose declared schedules `declared` is, all of them
    schedule: Schedule | None
    token: int
    declared: tuple[Schedule, ...] = ()


@record
class CheckMailbox:
    """A cluster node's mailbox task: rows may wait for partitions this node owns; apply them
    (the reply's `data` is how many were read, so the task asks again when the read was full)."""

    token: int


Command = (
    Invoke
    | Ingest
    | SdkMessage
    | AttemptFailed
    | AttemptOpened
    | TimerFired
    | Attach
    | CompleteAwakeable
    | Terminate
    | ReplaceState
    | RestartAsNew
    | ChangeRules
    | ChangeSchedule
    | CheckMailbox
)
