"""Serialization of handler inputs/outputs, state, run results and promises:
JSON by default, Pydantic models and dataclasses picked from type hints, raw
bytes, or any object with `serialize`/`deserialize`."""

from __future__ import annotations

import abc
import dataclasses
import json
import sys
import types
import typing
from typing import Any, Generic, TypeVar, Union

import orjson

T = TypeVar("T")
I = TypeVar("I")  # noqa: E741 - the name restate users know


class Serde(Generic[T], abc.ABC):
    """Turns values into bytes and back."""

    @abc.abstractmethod
    def deserialize(self, buf: bytes) -> T | None: ...

    @abc.abstractmethod
    def serialize(self, obj: T | None) -> bytes: ...


class BytesSerde(Serde[bytes]):
    """Raw bytes, passed through."""

    def deserialize(self, buf: bytes) -> bytes | None:
        return buf

    def serialize(self, obj: bytes | None) -> bytes:
        return b"" if obj is None else bytes(obj)


def json_dumps(obj: Any) -> bytes:
    try:
        return orjson.dumps(obj)
    except TypeError:  # non-str keys, huge ints: the stdlib handles them
        return json.dumps(obj).encode()


def json_loads(buf: bytes) -> Any:
    try:
        return orjson.loads(buf)
    except orjson.JSONDecodeError:
        return json.loads(buf)


class JsonSerde(Serde[I]):
    """Plain JSON; empty bytes mean None."""

    def deserialize(self, buf: bytes) -> I | None:
        return None if not buf else typing.cast(I, json_loads(buf))

    def serialize(self, obj: I | None) -> bytes:
        return b"" if obj is None else json_dumps(obj)


def is_pydantic(hint: Any) -> bool:
    mod = sys.modules.get("pydantic")
    if mod is None or not isinstance(hint, type):
        return False
    return issubclass(hint, mod.BaseModel)


class PydanticJsonSerde(Serde[I]):
    """JSON through a Pydantic model (validated on the way in)."""

    def __init__(self, model: type[I]) -> None:
        self.model = model

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        return typing.cast(I, self.model.model_validate_json(buf))  # type: ignore[attr-defined]

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        return obj.model_dump_json().encode()  # type: ignore[attr-defined, no-any-return]


class DataclassSerde(Serde[I]):
    """JSON objects to and from (nested) dataclasses."""

    def __init__(self, cls: type[I]) -> None:
        self.cls = cls

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        return typing.cast(I, from_json_data(self.cls, json_loads(buf)))

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        return json_dumps(dataclasses.asdict(obj))  # type: ignore[call-overload]


class DefaultSerde(Serde[I]):
    """JSON, or the serde its type hint calls for (Pydantic model, dataclass)."""

    def __init__(self, type_hint: type[I] | None = None) -> None:
        self.type_hint = type_hint

    def with_maybe_type(self, type_hint: type[I] | None = None) -> DefaultSerde[I]:
        return DefaultSerde(type_hint)

    def deserialize(self, buf: bytes) -> I | None:
        if not buf:
            return None
        hint = self.type_hint
        if hint is None:
            return typing.cast(I, json_loads(buf))
        if is_pydantic(hint):
            return typing.cast(I, hint.model_validate_json(buf))  # type: ignore[attr-defined]
        return typing.cast(I, from_json_data(hint, json_loads(buf)))

    def serialize(self, obj: I | None) -> bytes:
        if obj is None:
            return b""
        if is_pydantic(type(obj)):
            return obj.model_dump_json().encode()  # type: ignore[attr-defined, no-any-return]
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            return json_dumps(dataclasses.asdict(obj))
        return json_dumps(obj)


def serde_for(hint: Any, given: Serde[Any]) -> Serde[Any]:
    """The serde to use for a value typed `hint` when the user gave `given`
    (a DefaultSerde means "pick for me")."""
    if not isinstance(given, DefaultSerde) or given.type_hint is not None:
        return given
    core = optional_core(hint)
    if core is None or core is Any:
        return given
    if core is bytes:
        return BytesSerde()
    if is_pydantic(core):
        return PydanticJsonSerde(core)
    if dataclasses.is_dataclass(core) and isinstance(core, type):
        return DataclassSerde(core)
    return given


def optional_core(hint: Any) -> Any:
    """`Optional[X]` -> X; anything else unchanged."""
    origin = typing.get_origin(hint)
    if origin is Union or origin is types.UnionType:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def from_json_data(hint: Any, data: Any) -> Any:
    """Rebuild typed values (dataclasses, lists and dicts of them) from JSON data."""
    if data is None:
        return None
    hint = optional_core(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type) and isinstance(data, dict):
        hints = typing.get_type_hints(hint)
        kwargs = {
            f.name: from_json_data(hints.get(f.name, Any), data[f.name])
            for f in dataclasses.fields(hint)
            if f.name in data
        }
        return hint(**kwargs)
    if is_pydantic(hint):
        return hint.model_validate(data)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is list and args and isinstance(data, list):
        return [from_json_data(args[0], x) for x in data]
    if origin is dict and len(args) == 2 and isinstance(data, dict):
        return {k: from_json_data(args[1], v) for k, v in data.items()}
    return data
