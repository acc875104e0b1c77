"""SQL functions the introspection views are built from: id and timestamp
rendering, journal entry decoding, failure text, and the live facts (attempts
in flight, the registry) that each query sees as a snapshot."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from http import HTTPStatus

import orjson

from perdure.protocol.ids import PK_CHARS, UUID_CHARS, b62encode, partition_key_of
from perdure.server.processor.limits import matches, parse_pattern
from perdure.server.processor.schedules import NEXT_RUNS_SHOWN, Schedule, next_runs
from perdure.server.query.entries import kind_name, view

U64_SIGN = 1 << 63
SECOND_CACHE_MAX = 65_536  # formatted seconds of timestamp_text
ID_CACHE_MAX = 262_144  # rendered ids kept across queries (repeated scans of the same rows)
ENTRY_FIELDS = frozenset(
    (
        "entry_type",
        "name",
        "completion_id",
        "notification_id",
        "invocation_id_notification",
        "invocation_id_value",
        "invoked_target",
        "sleep_wakeup_at_ms",
        "promise_name",
        "entry_json",
        "entry_lite_json",
    )
)


@dataclass(slots=True)
class QueryContext:
    """Per-connection facts for the query being run; replaced before each query."""

    live: Collection[bytes] = frozenset()
    deployments_json: str = "[]"
    services_json: str = "[]"
    subscription_lag_json: str = "[]"
    deadline: float = float("inf")  # time.monotonic() after which the query is interrupted
    timed_out: bool = False
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def signed(u64: int) -> int:
    """SQLite integers are signed 64-bit: store u64 values as their two's complement."""
    return u64 - (1 << 64) if u64 >= U64_SIGN else u64


def unsigned(i64: int) -> int:
    return i64 + (1 << 64) if i64 < 0 else i64


@lru_cache(maxsize=SECOND_CACHE_MAX)
def _second_text(second: int) -> str:
    return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def timestamp_text(ms: int | None) -> str | None:
    """RFC 3339 with milliseconds and `Z`, as Restate renders Timestamp(ms) columns. A scan that
    sorts or filters on a timestamp renders every row's; many rows share their second, so the
    formatted second is cached (10x faster over 100,000 invocations)."""
    if ms is None:
        return None
    return f"{_second_text(ms // 1000)}.{ms % 1000:03d}Z"


def timestamp_ms(value: str | int | float | None) -> int | None:
    """Milliseconds of a timestamp as DataFusion's `to_timestamp` reads it: RFC 3339 text (`Z`
    or an offset; a date alone is midnight UTC), or a number of seconds since the epoch."""
    if value is None:
        return None
    if isinstance(value, int | float):
        return round(value * 1000)
    try:
        dt = datetime.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"cannot read {value!r} as a timestamp") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return round(dt.timestamp() * 1000)


def _to_timestamp(value: str | int | float | None) -> str | None:
    return timestamp_text(timestamp_ms(value))


def _ts_add(value: str | int | float | None, delta_ms: int) -> str | None:
    ms = timestamp_ms(value)
    return None if ms is None else timestamp_text(ms + int(delta_ms))


_TYPE_RANK = {int: 1, float: 1, str: 2, bytes: 3}  # SQLite's order of storage classes


class FirstValue:
    """`perdure_first_value(value, key1, flags1, key2, flags2, ...)`: the aggregate DataFusion
    calls `FIRST_VALUE(value ORDER BY key1, key2)`; flags = 2 * desc + nulls_first. Without
    keys, the first value seen. Ties keep the earliest row."""

    __slots__ = ("_best", "_seen", "_value")

    def __init__(self) -> None:
        self._seen = False
        self._best: tuple[tuple[int, object], ...] = ()
        self._value: object = None

    @staticmethod
    def _key(key: object, flags: int) -> tuple[int, object]:
        desc, nulls_first = flags >= 2, flags % 2 == 1
        if key is None:
            return (-1 if nulls_first else 4, 0)
        rank = _TYPE_RANK.get(type(key), 3)
        if desc:
            # Descending: flip the storage-class rank and the value (numbers negate, others wrap).
            return (4 - rank - 1, -key if isinstance(key, int | float) else _Reversed(key))
        return (rank, key)

    def step(self, value: object, *keys: object) -> None:
        key = tuple(
            self._key(k, f if isinstance(f, int) else 0) for k, f in zip(keys[::2], keys[1::2], strict=False)
        )
        if not self._seen or key < self._best:
            self._seen, self._best, self._value = True, key, value

    def finalize(self) -> object:
        return self._value


class _Reversed:
    __slots__ = ("v",)

    def __init__(self, v: object) -> None:
        self.v = v

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.v < self.v)  # type: ignore[operator]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(self.v == other.v)

    def __hash__(self) -> int:
        return hash(self.v)


def duration_text(ms: int | None) -> str | None:
    """ISO 8601 duration in seconds ("PT86400S", "PT0.5S"), as Restate renders Duration(ms)."""
    if ms is None:
        return None
    seconds, rest = divmod(int(ms), 1000)
    return f"PT{seconds}S" if rest == 0 else f"PT{seconds}.{rest:03d}".rstrip("0") + "S"


@lru_cache(maxsize=ID_CACHE_MAX)
def invocation_id_text(raw: bytes) -> str:
    """`inv_1…` of a raw 24-byte id; equal to `str(InvocationId.from_raw(raw))`, without the object
    (a scan renders every row's id)."""
    pk = b62encode(int.from_bytes(raw[:8], "little"), PK_CHARS)
    return "inv_1" + pk + b62encode(int.from_bytes(raw[8:], "little"), UUID_CHARS)


def _id_text(raw: bytes | None) -> str | None:
    if raw is None or len(raw) != 24:
        return None
    return invocation_id_text(bytes(raw))


def _partition_key(raw: bytes | None) -> int | None:
    if raw is None or len(raw) < 8:
        return None
    return signed(int.from_bytes(raw[:8], "big"))


def _key_partition_key(key: str | None) -> int | None:
    return None if key is None else signed(partition_key_of(key))


def _utf8(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _unhex(text: str | None) -> bytes | None:
    return None if text is None else bytes.fromhex(text)


def _entry(msg_type: int, body: bytes, name: str) -> str | int | None:
    if name not in ENTRY_FIELDS:
        raise ValueError(f"unknown journal entry field {name!r}")
    value: str | int | None = getattr(view(msg_type, bytes(body)), name)
    return value


# Restate's names for the protocol's own failure codes, and the documented error
# codes (RTxxxx) it reports for them in `last_failure_error_code`.
PROTOCOL_CODE_NAMES = {500: "Internal", 570: "Journal mismatch", 571: "Protocol violation"}
RESTATE_ERROR_CODES = {570: "RT0016"}
RETRYABLE_ERROR_CODE = "RT0007"


def code_name(code: int) -> str:
    if code in PROTOCOL_CODE_NAMES:
        return PROTOCOL_CODE_NAMES[code]
    try:
        return HTTPStatus(code).phrase.replace(" ", "")
    except ValueError:
        return "Unknown"


def failure_text(last_failure_json: str | None) -> str | None:
    """`[500 Internal] message` then the stack trace on the next line, as Restate shows `last_failure`."""
    if last_failure_json is None:
        return None
    lf = orjson.loads(last_failure_json)
    head = f"[{lf['code']} {code_name(int(lf['code']))}] {lf['message']}"
    stack = lf.get("stacktrace") or ""
    return f"{head}\n{stack}" if stack else head


def error_code(last_failure_json: str | None) -> str | None:
    """The Restate error code of the last failure (RT0007: a retryable error of the service)."""
    if last_failure_json is None:
        return None
    code = int(orjson.loads(last_failure_json)["code"])
    return RESTATE_ERROR_CODES.get(code, RETRYABLE_ERROR_CODE)


def transient_error_json(last_failure_json: str | None) -> str | None:
    """The `sys_journal_events` rendering of the last transient failure."""
    if last_failure_json is None:
        return None
    lf = orjson.loads(last_failure_json)
    event = {
        "ty": "TransientError",
        "error_code": lf["code"],
        "error_message": lf["message"],
        "error_stacktrace": lf.get("stacktrace") or "",
        "related_command_index": lf.get("related_command_index"),
        "related_command_name": lf.get("related_command_name"),
        "related_command_type": _kind(lf.get("related_command_type")),
    }
    return orjson.dumps({k: v for k, v in event.items() if v is not None}).decode()


def _kind(msg_type: int | None) -> str | None:
    return None if msg_type is None else kind_name(int(msg_type))


def _rule_matches(pattern: str, service: str, handler: str, key: str | None) -> int:
    return 1 if matches(parse_pattern(pattern), (service, handler, key)) else 0


def _schedule_next_runs(record: bytes) -> str:
    s = Schedule.decode(bytes(record))
    runs = next_runs(s, s.next_ms, NEXT_RUNS_SHOWN) if s.next_ms is not None else []
    return orjson.dumps([timestamp_text(ms) for ms in runs]).decode()


def register(conn: sqlite3.Connection, ctx: QueryContext) -> None:
    """Install every function on `conn`; the live ones read `ctx`."""
    pure = {"deterministic": True}
    conn.create_function("perdure_id", 1, _id_text, **pure)
    conn.create_function("perdure_pk", 1, _partition_key, **pure)
    conn.create_function("perdure_key_pk", 1, _key_partition_key, **pure)
    conn.create_function("perdure_ts", 1, timestamp_text, **pure)
    conn.create_function("perdure_dur", 1, duration_text, **pure)
    conn.create_function("perdure_utf8", 1, _utf8, **pure)
    conn.create_function("perdure_unhex", 1, _unhex, **pure)
    conn.create_function("perdure_entry", 3, _entry, **pure)
    conn.create_function("perdure_kind", 1, _kind, **pure)
    conn.create_function("perdure_failure", 1, failure_text, **pure)
    conn.create_function("perdure_error_code", 1, error_code, **pure)
    conn.create_function("perdure_transient_error", 1, transient_error_json, **pure)
    conn.create_function("perdure_rule_matches", 4, _rule_matches, **pure)
    conn.create_function("perdure_schedule_next_runs", 1, _schedule_next_runs, **pure)
    conn.create_function("perdure_in_flight", 1, lambda raw: 1 if bytes(raw) in ctx.live else 0)
    conn.create_function("perdure_deployments", 0, lambda: ctx.deployments_json)
    conn.create_function("perdure_services", 0, lambda: ctx.services_json)
    conn.create_function("perdure_lag_rows", 0, lambda: ctx.subscription_lag_json)
    conn.create_function("now", 0, lambda: timestamp_text(ctx.now_ms))
    conn.create_function("perdure_to_timestamp", 1, _to_timestamp, **pure)
    conn.create_function("perdure_ts_add", 2, _ts_add, **pure)
    conn.create_aggregate("perdure_first_value", -1, FirstValue)  # type: ignore[arg-type]
