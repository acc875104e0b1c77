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
import pyarrow as pa

from perdure.server.query.engine import QueryResult
from perdure.server.query.functions import unsigned
from perdure.server.query.tables import (
    BIN,
    BOOL,
    DUR,
    LIST_U32,
    LIST_UTF8,
    TS,
    U32,
    U64,
    UTF8,
    column_types,
)

ARROW_CONTENT_TYPE = "application/vnd.apache.arrow.stream"

_TYPES = column_types()
# Columns the CLI computes under its own names, typed as Restate types them.
_TYPES.update({"pinned_deployment_exists": BOOL})

_ARROW: dict[str, pa.DataType] = {
    UTF8: pa.large_string(),
    U32: pa.uint32(),
    U64: pa.uint64(),
    BOOL: pa.bool_(),
    TS: pa.timestamp("ms", tz="+00:00"),
    DUR: pa.duration("ms"),
    BIN: pa.large_binary(),
    LIST_U32: pa.list_(pa.uint32()),
    LIST_UTF8: pa.list_(pa.large_string()),
}


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
_ARROW_OF: dict[str, Callable[[Any], Any]] = {
    **_JSON_OF,
    TS: _ts_ms,
    DUR: _dur_ms,
    BIN: bytes,
    UTF8: str,
    U32: int,
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


def _inferred(values: list[Any]) -> pa.DataType:
    kinds = {type(v) for v in values if v is not None}
    if not kinds:
        return pa.null()
    if kinds == {int}:
        return pa.int64()
    if kinds <= {int, float}:
        return pa.float64()
    if kinds <= {bytes}:
        return pa.large_binary()
    return pa.large_string()


def _arrow_column(values: list[Any], declared: str | None) -> pa.Array:
    if declared is not None:
        conv = _ARROW_OF.get(declared)
        try:
            data = [None if v is None else (conv(v) if conv else v) for v in values]
            return pa.array(data, type=_ARROW[declared])
        except (ValueError, TypeError, OverflowError, pa.ArrowException):
            pass  # a renamed expression that does not fit the catalogued type
    ty = _inferred(values)
    if ty == pa.large_string():
        values = [None if v is None else (v.hex() if isinstance(v, bytes) else str(v)) for v in values]
    return pa.array(values, type=ty)


def to_arrow(result: QueryResult) -> bytes:
    """An Arrow IPC stream: schema, one record batch, end-of-stream marker."""
    columns = list(zip(*result.rows, strict=True)) if result.rows else [() for _ in result.columns]
    arrays = [
        _arrow_column(list(values), declared)
        for values, declared in zip(columns, _declared(result), strict=True)
    ]
    batch = pa.RecordBatch.from_arrays(arrays, names=result.columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue().to_pybytes())
