"""Frozen dataclasses as JSON, for what leaves one processor for another: commands forwarded
between cluster nodes (`cluster/wire.py`) and the rows of the partition mailbox (`mail.py`).

Only the types a caller allows are ever built from what it reads (no pickle: a node's admin
port is a network service, a mailbox row was written by another node). bytes travel as base64,
tuples keep their type."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable
from typing import Any

import orjson

from perdure.protocol.ids import InvocationId


class PortableError(ValueError):
    """What was read is not a value of the allowed types."""


class Codec:
    def __init__(self, types: Iterable[type[Any]]) -> None:
        self._types: dict[str, type[Any]] = {t.__name__: t for t in types}

    def _enc(self, v: Any) -> Any:
        if v is None or isinstance(v, bool | int | float | str):
            return v
        if isinstance(v, bytes):
            return {"$b": base64.b64encode(v).decode()}
        if isinstance(v, tuple):
            return {"$t": [self._enc(x) for x in v]}
        if isinstance(v, list):
            return [self._enc(x) for x in v]
        if isinstance(v, dict):
            return {"$d": [[self._enc(k), self._enc(x)] for k, x in v.items()]}
        if isinstance(v, InvocationId):
            return {"$id": str(v)}
        name = type(v).__name__
        if name not in self._types or not dataclasses.is_dataclass(v):
            raise PortableError(f"cannot send a {name}")
        return {"$": name, **{f.name: self._enc(getattr(v, f.name)) for f in dataclasses.fields(v) if f.init}}

    def _dec(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self._dec(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "$b" in v:
            return base64.b64decode(v["$b"])
        if "$t" in v:
            return tuple(self._dec(x) for x in v["$t"])
        if "$d" in v:
            return {self._dec(k): self._dec(x) for k, x in v["$d"]}
        if "$id" in v:
            return InvocationId.parse(v["$id"])
        cls = self._types.get(v.get("$", ""))
        if cls is None:
            raise PortableError(f"unknown type {v.get('$')!r}")
        return cls(**{k: self._dec(x) for k, x in v.items() if k != "$"})

    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(self._enc(obj))

    def decode(self, data: bytes) -> Any:
        try:
            return self._dec(orjson.loads(data))
        except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
            raise PortableError(f"bad message: {exc}") from exc
