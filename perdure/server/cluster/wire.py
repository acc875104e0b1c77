"""Commands and replies as JSON between nodes (a forwarded request and its answer): the
portable codec (`processor/portable.py`) over an allow-list of the frozen dataclasses of
`commands` and `effects`; only these types are ever built from what another node sent."""

from __future__ import annotations

from typing import Any

from perdure.protocol.ids import AwakeableRef
from perdure.server.processor.commands import (
    Attach,
    ChangeSchedule,
    CompleteAwakeable,
    Ingest,
    Invoke,
    InvokeRequest,
    ReplaceState,
    RestartAsNew,
    Terminate,
)
from perdure.server.processor.effects import Reply
from perdure.server.processor.model import CallerRef, Failure, Outcome, Target
from perdure.server.processor.portable import Codec, PortableError
from perdure.server.processor.schedules import Schedule

_CODEC = Codec(
    (
        Attach,
        AwakeableRef,
        CallerRef,
        ChangeSchedule,
        CompleteAwakeable,
        Failure,
        Ingest,
        Invoke,
        InvokeRequest,
        Outcome,
        ReplaceState,
        Reply,
        RestartAsNew,
        Schedule,
        Target,
        Terminate,
    )
)


class WireError(ValueError):
    """What another node sent is not a command or reply this node knows."""


def encode(obj: Any) -> bytes:
    try:
        return _CODEC.encode(obj)
    except PortableError as exc:
        raise WireError(f"cannot send to another node: {exc}") from exc


def decode(data: bytes) -> Any:
    try:
        return _CODEC.decode(data)
    except PortableError as exc:
        raise WireError(f"bad message from another node: {exc}") from exc
