"""Query results as an Arrow IPC stream with Restate's column types. Kept
apart from the JSON encoder so that pyarrow (tens of MB) is only loaded by the
first query that asks for Arrow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from perdure.server.query.encode import _JSON_OF, _declared, _dur_ms, _ts_ms
from perdure.server.query.engine import QueryResult
from perdure.server.query.tables import BIN, BOOL, DUR, F64, LIST_U32, LIST_UTF8, TS, U32, U64, UTF8

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
    F64: pa.float64(),
}


_ARROW_OF: dict[str, Callable[[Any], Any]] = {
    **_JSON_OF,
    TS: _ts_ms,
    DUR: _dur_ms,
    BIN: bytes,
    UTF8: str,
    U32: int,
}


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
