"""Commands and replies as JSON between nodes (a forwarded request and its answer).

A small codec over the frozen dataclasses of `commands` and `effects`: only the types listed
here are ever built from what another node sent (no pickle: a node's admin port is a network
service). bytes travel as base64, tuples keep their type."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import orjson

from perdure.protocol.ids import AwakeableRef, InvocationId
from perdure.server.processor.commands import (
    Attach,
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

_TYPES: dict[str, type[Any]] = {
    t.__name__: t
    for t in (
        Attach,
        AwakeableRef,
        CallerRef,
        CompleteAwakeable,
        Failure,
        Ingest,
        Invoke,
        InvokeRequest,
        Outcome,
        ReplaceState,
        Reply,
        RestartAsNew,
        Target,
        Terminate,
    )
}


class WireError(ValueError):
    """What another node sent is not a command or reply this node knows."""


def _enc(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, bytes):
        return {"$b": base64.b64encode(v).decode()}
    if isinstance(v, tuple):
        return {"$t": [_enc(x) for x in v]}
    if isinstance(v, list):
        return [_enc(x) for x in v]
    if isinstance(v, dict):
        return {"$d": [[_enc(k), _enc(x)] for k, x in v.items()]}
    if isinstance(v, InvocationId):
        return {"$id": str(v)}
    name = type(v).__name__
    if name not in _TYPES or not dataclasses.is_dataclass(v):
        raise WireError(f"cannot send a {name} to another node")
    return {"$": name, **{f.name: _enc(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}}


def _dec(v: Any) -> Any:
    if isinstance(v, list):
        return [_dec(x) for x in v]
    if not isinstance(v, dict):
        return v
    if "$b" in v:
        return base64.b64decode(v["$b"])
    if "$t" in v:
        return tuple(_dec(x) for x in v["$t"])
    if "$d" in v:
        return {_dec(k): _dec(x) for k, x in v["$d"]}
    if "$id" in v:
        return InvocationId.parse(v["$id"])
    cls = _TYPES.get(v.get("$", ""))
    if cls is None:
        raise WireError(f"unknown type {v.get('$')!r}")
    return cls(**{k: _dec(x) for k, x in v.items() if k != "$"})


def encode(obj: Any) -> bytes:
    return orjson.dumps(_enc(obj))


def decode(data: bytes) -> Any:
    try:
        return _dec(orjson.loads(data))
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise WireError(f"bad message from another node: {exc}") from exc
