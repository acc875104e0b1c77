"""Journal results and the replay check: what a handle resolves to, and how a
command produced by the code is compared with the one the journal recorded, so
that a changed code path fails loudly (code 570) instead of corrupting state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perdure.protocol.codec import MessageType, type_name
from perdure.protocol.errors import JournalMismatch

JOURNAL_MISMATCH = 570
PROTOCOL_VIOLATION = 571


@dataclass(frozen=True, slots=True)
class Failure:
    """A terminal failure recorded in the journal (a Failure message)."""

    code: int
    message: str


class Void:
    """The empty result of a notification (sleep done, promise completed, state missing)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "VOID"


VOID = Void()

# A handle resolves to one of: bytes (a Value's content), VOID, a Failure, an
# invocation id (str) or a list of state keys.
Result = bytes | Void | Failure | str | list[str]


# Fields that identify a command: replay compares them, never payloads that may
# legitimately differ between attempts (wake-up times, run results).
_IDENTITY_FIELDS: dict[int, tuple[str, ...]] = {
    MessageType.GET_LAZY_STATE: ("key",),
    MessageType.GET_EAGER_STATE: ("key",),
    MessageType.SET_STATE: ("key",),
    MessageType.CLEAR_STATE: ("key",),
    MessageType.GET_PROMISE: ("key",),
    MessageType.PEEK_PROMISE: ("key",),
    MessageType.COMPLETE_PROMISE: ("key",),
    MessageType.CALL: ("service_name", "handler_name", "key"),
    MessageType.ONE_WAY_CALL: ("service_name", "handler_name", "key"),
    MessageType.SEND_SIGNAL: ("target_invocation_id", "idx"),
    MessageType.RUN: ("name",),
    MessageType.ATTACH_INVOCATION: ("invocation_id",),
    MessageType.GET_INVOCATION_OUTPUT: ("invocation_id",),
    MessageType.COMPLETE_AWAKEABLE: ("awakeable_id",),
}


def describe(msg_type: int, msg: Any) -> str:
    """`RUN(name='step-a')`: the command and the fields replay compares."""
    fields = _IDENTITY_FIELDS.get(msg_type, ())
    parts = [f"{f}={getattr(msg, f)!r}" for f in fields]
    return f"{type_name(msg_type)}({', '.join(parts)})"


def check_replayed(index: int, recorded_type: int, recorded: Any, new_type: int, new: Any) -> None:
    """Raise JournalMismatch when the code produced a different command than the
    journal holds at `index`."""
    if recorded_type == new_type and all(
        getattr(recorded, f) == getattr(new, f) for f in _IDENTITY_FIELDS.get(new_type, ())
    ):
        return
    raise JournalMismatch(
        f"Non-deterministic replay: journal command #{index} is {describe(recorded_type, recorded)}, "
        f"but the handler code now produced {describe(new_type, new)}. "
        "The code of this deployment changed under a running invocation; "
        "register changed code as a new deployment instead."
    )
