"""What one partition sends another through the partition mailbox (`mailbox.py`): plain frozen
data, one row of the `mailbox` table each, keyed by the target partition.

A processor writes these rows in its own batch when the target of a call, send, signal,
awakeable completion, attach or result delivery is a partition it does not own; a node whose
ingress cannot find a live owner writes `MailInvoke` and `MailSignal` rows directly (the durable
inbox). The owner of the target partition applies each row as a command and deletes it in the
same batch."""

from __future__ import annotations

from perdure.protocol.ids import InvocationId
from perdure.record import record
from perdure.server.processor.commands import InvokeRequest
from perdure.server.processor.model import CallerRef, Target
from perdure.server.processor.portable import Codec


@record
class MailInvoke:
    """Create invocation `id` (unless it exists: then `caller`, if any, is attached to it)."""

    id: InvocationId
    request: InvokeRequest
    caller: CallerRef | None
    invoked_by: str  # "service" | "ingress"
    by_id: str | None = None
    by_target: str | None = None


@record
class MailSignal:
    """Signal `idx` (an awakeable's index, or cancel) of invocation `id`; `result` is "value",
    "failure" or "void" and `body` the serialized pb.Value / pb.Failure / pb.Void."""

    id: bytes
    idx: int
    result: str
    body: bytes


@record
class MailNotify:
    """Journal notification `body` (a serialized pb.NotificationMessage) of type `type` into
    invocation `id`: a call's result, an attach's answer."""

    id: bytes
    type: int
    body: bytes


@record
class MailAttach:
    """Invocation `caller` attaches to `id` (wait) or asks for its output now; the answer goes
    back as a `MailNotify` when the caller's partition is not this one's."""

    id: bytes
    caller: CallerRef
    wait: bool


@record
class MailKill:
    """Kill invocation `id` and what it calls (a killed caller's pending callee)."""

    id: bytes


Mail = MailInvoke | MailSignal | MailNotify | MailAttach | MailKill

_CODEC = Codec((MailInvoke, MailSignal, MailNotify, MailAttach, MailKill, InvokeRequest, CallerRef, Target))


def encode(mail: Mail) -> bytes:
    return _CODEC.encode(mail)


def decode(body: bytes) -> Mail:
    m = _CODEC.decode(body)
    assert isinstance(m, MailInvoke | MailSignal | MailNotify | MailAttach | MailKill), m
    return m
