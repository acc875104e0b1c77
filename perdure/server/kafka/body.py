"""Request bodies of the Kafka admin routes, refused as Restate's axum/serde layer refuses them: plain
text 422 `Failed to deserialize the JSON body into the target type: FIELD: REASON at line L column C`,
where C is where serde stopped (the end of the offending value, or of the object for a missing field),
and URIs Rust's `http::Uri` would not parse (a space, an empty authority after `scheme://`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from perdure.server.kafka.model import KafkaAdminError

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"
_URI_FORBIDDEN = set(' "<>\\^`{|}')
_PREFIX = "Failed to deserialize the JSON body into the target type: "


@dataclass(frozen=True, slots=True)
class Located:
    value: Any
    end: int  # index just past the value in the raw text


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _object(text: str, start: int) -> tuple[dict[str, Located], int]:
    """Members of the object at `start` with where each value ends, and the end of the object."""
    i = _skip(text, start)
    assert text[i] == "{"
    members: dict[str, Located] = {}
    i = _skip(text, i + 1)
    if text[i] == "}":
        return members, i + 1
    while True:
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _skip(text, _skip(text, i) + 1)  # past ':'
        if text[i] == "{":
            inner, end = _object(text, i)
            value: Any = {k: v.value for k, v in inner.items()}
            members[key] = Located(value, end)
            members.update({f"{key}.{k}": v for k, v in inner.items()})
        else:
            value, end = _DECODER.raw_decode(text, i)
            members[key] = Located(value, end)
        i = _skip(text, end)
        if text[i] == "}":
            return members, i + 1
        i = _skip(text, i + 1)  # past ','


def _position(text: str, end: int) -> str:
    line = text.count("\n", 0, end) + 1
    col = end - (text.rfind("\n", 0, end) + 1)
    return f"at line {line} column {col}"


class Body:
    """A parsed JSON object body (already known to be valid JSON) with serde-like field checks."""

    def __init__(self, raw: bytes) -> None:
        self._text = raw.decode("utf-8")
        stripped = self._text.lstrip(_WS)
        if not stripped.startswith("{"):
            self._members: dict[str, Located] = {}
            self._end = len(self._text)
            self._is_object = False
        else:
            self._members, self._end = _object(self._text, 0)
            self._is_object = True

    def _fail(self, message: str, end: int) -> KafkaAdminError:
        return KafkaAdminError(422, f"{_PREFIX}{message} {_position(self._text, end)}", plain=True)

    def _require_object(self) -> None:
        if not self._is_object:
            raise self._fail("invalid type: expected struct", self._end)

    def string(self, name: str, *, uri: bool = False) -> str:
        self._require_object()
        got = self._members.get(name)
        if got is None:
            raise self._fail(f"missing field `{name}`", self._end)
        if not isinstance(got.value, str):
            raise self._fail(f"{name}: invalid type: {_kind(got.value)}, expected a string", got.end)
        if uri:
            value = got.value
            if not value or any(c in _URI_FORBIDDEN or ord(c) < 0x21 for c in value):
                raise self._fail(f"{name}: invalid uri character", got.end)
            _, sep, rest = value.partition("://")
            if sep and (not rest or rest.startswith("/")):
                raise self._fail(f"{name}: invalid format", got.end)
        return got.value

    def string_map(self, name: str, *, required: bool) -> dict[str, str]:
        self._require_object()
        got = self._members.get(name)
        if got is None or got.value is None:
            if required and got is None:
                raise self._fail(f"missing field `{name}`", self._end)
            return {}
        if not isinstance(got.value, dict):
            raise self._fail(f"{name}: invalid type: {_kind(got.value)}, expected a map", got.end)
        for key, value in got.value.items():
            if not isinstance(value, str):
                inner = self._members[f"{name}.{key}"]
                raise self._fail(f"{name}.{key}: invalid type: {_kind(value)}, expected a string", inner.end)
        return dict(got.value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"boolean `{str(value).lower()}`"
    if isinstance(value, int):
        return f"integer `{value}`"
    if isinstance(value, float):
        return f"floating point `{value}`"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f'string "{value}"'
    return "sequence" if isinstance(value, list) else "map"
