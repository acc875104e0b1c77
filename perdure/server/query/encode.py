"""Query results in the two formats of Restate's `/query`: JSON rows (NULL
columns omitted, booleans as booleans, binary as lowercase hex, lists as
arrays) and an Arrow IPC stream with Restate's column types.

A result column is typed by its name when Restate's catalogue gives that
name one type (`created_at` is a timestamp wherever it appears); other
columns (aliases, expressions) are typed from their values."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from perdure.server.query.engine import QueryResult
from perdure.server.query.functions import unsigned
from perdure.server.query.tables import (
    BOOL,
    LIST_U32,
    LIST_UTF8,
    U64,
    column_types,
)

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"

_TYPES = column_types()
# Columns the CLI computes under its own names, typed as Restate types them.
_TYPES.update({"pinned_deployment_exists": BOOL})


def _ts_ms(text: str) -> int:
    """Inverse of `functions.timestamp_text` ("2026-11-25T07:58:57.831Z")."""
    if len(text) != 24 or text[19] != "." or text[23] != "Z":
        raise ValueError(f"not a timestamp: {text!r}")
    dt = datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(dt.timestamp()) * 1000 + int(text[20:23])


def _dur_ms(text: str) -> int:
    return round(float(text.removeprefix("PT").removesuffix("S")) * 1000)


def _json_list(text: str | list[Any]) -> list[Any]:
    return text if isinstance(text, list) else list(orjson.loads(text))


# How a stored value becomes the column's JSON value / Arrow value, per type.
_JSON_OF: dict[str, Callable[[Any], Any]] = {
    BOOL: bool,
    U64: unsigned,
    LIST_U32: _json_list,
    LIST_UTF8: _json_list,
}


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    raise TypeError(f"cannot encode {type(value).__name__}")


def _declared(result: QueryResult) -> list[str | None]:
    return [_TYPES.get(name) for name in result.columns]


def to_json(result: QueryResult) -> bytes:
    """`{"rows": [...]}` with NULL columns left out of each row object."""
    convert = [_JSON_OF.get(t) if t else None for t in _declared(result)]
    out = []
    for row in result.rows:
        obj: dict[str, Any] = {}
        for name, conv, value in zip(result.columns, convert, row, strict=True):
            if value is None:
                continue
            if isinstance(value, (bytes, bytearray, memoryview)):
                obj[name] = bytes(value).hex()
                continue
            obj[name] = conv(value) if conv is not None else value
        out.append(obj)
    return orjson.dumps({"rows": out}, default=_json_default)


def to_arrow(result: QueryResult) -> bytes:
    """An Arrow IPC stream: schema, one record batch, end-of-stream marker."""
    from perdure.server.query.encode_arrow import to_arrow as encode

    return encode(result)
