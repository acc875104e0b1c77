"""Schedules: cron or interval ticks that invoke a handler with a fixed body (sans-IO data).

A tick at instant `t` becomes one invocation with the idempotency key `schedule:<name>:<t>`:
the schedule's next tick advances in the same batch that creates the invocation, and a replay
after a crash finds the same key, so each tick runs once across restarts. Cron expressions are
parsed by croniter, in the schedule's time zone (zoneinfo)."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from croniter import croniter

OVERLAP_POLICIES = ("skip", "buffer_one", "allow")
CATCH_UP_MAX_LIMIT = 1000  # the most missed ticks a schedule may run after downtime
EVERY_MS_MIN = 100
NEXT_RUNS_SHOWN = 5


class ScheduleError(ValueError):
    """A schedule the caller got wrong (422)."""


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    service: str
    handler: str
    key: str | None
    body: bytes  # the request body every tick sends (JSON)
    cron: str | None = None
    every_ms: int | None = None
    timezone: str = "UTC"
    overlap: str = "allow"  # what a tick does while the previous tick's invocation still runs
    catch_up_max: int = 1  # after downtime, how many of the missed ticks run (the latest ones)
    paused: bool = False
    anchor_ms: int = 0  # interval ticks are anchor + k * every
    next_ms: int | None = None  # the next tick (None while paused)
    last_tick_ms: int | None = None
    last_invocation: str | None = None
    buffered_ms: int | None = None  # buffer_one: the tick waiting for the running one to end
    fired: int = 0
    skipped: int = 0
    declared_by: str | None = None  # the service whose deployment declares it (SDK helper)

    @property
    def target(self) -> str:
        return (
            f"{self.service}/{self.handler}"
            if self.key is None
            else f"{self.service}/{self.key}/{self.handler}"
        )

    def encode(self) -> bytes:
        d = asdict(self)
        d["body"] = self.body.hex()
        return orjson.dumps(d)

    @staticmethod
    def decode(data: bytes) -> Schedule:
        d = orjson.loads(data)
        d["body"] = bytes.fromhex(d["body"])
        return Schedule(**d)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["body"] = _json_or_text(self.body)
        d["target"] = self.target
        d["next_runs_ms"] = next_runs(self, self.next_ms, NEXT_RUNS_SHOWN) if self.next_ms is not None else []
        return d

    def spec(self) -> tuple[Any, ...]:
        """What a declaration sets (a re-registration declaring the same spec changes nothing)."""
        return (
            self.service,
            self.handler,
            self.key,
            self.body,
            self.cron,
            self.every_ms,
            self.timezone,
            self.overlap,
            self.catch_up_max,
            self.declared_by,
        )

    def with_next(self, now_ms: int) -> Schedule:
        """Paused: no next tick; else the first tick after `now_ms`."""
        return replace(self, next_ms=None if self.paused else tick_after(self, now_ms))


def validate(s: Schedule) -> Schedule:
    """The schedule, checked (ScheduleError says what is wrong)."""
    if (s.cron is None) == (s.every_ms is None):
        raise ScheduleError("give exactly one of 'cron' and 'every'")
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(f"unknown time zone '{s.timezone}'") from None
    if s.cron is not None and not croniter.is_valid(s.cron):
        raise ScheduleError(f"invalid cron expression '{s.cron}'")
    if s.every_ms is not None and s.every_ms < EVERY_MS_MIN:
        raise ScheduleError(f"'every' must be at least {EVERY_MS_MIN} ms")
    if s.overlap not in OVERLAP_POLICIES:
        raise ScheduleError(f"'overlap' must be one of {', '.join(OVERLAP_POLICIES)}")
    if not 0 <= s.catch_up_max <= CATCH_UP_MAX_LIMIT:
        raise ScheduleError(f"'catch_up_max' must be between 0 and {CATCH_UP_MAX_LIMIT}")
    return s


def _zoned(s: Schedule, ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).astimezone(ZoneInfo(s.timezone))


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def tick_after(s: Schedule, ms: int) -> int:
    """The first tick strictly after `ms`."""
    if s.every_ms is not None:
        k = (ms - s.anchor_ms) // s.every_ms + 1
        return s.anchor_ms + max(k, 0) * s.every_ms
    assert s.cron is not None
    return _ms(croniter(s.cron, _zoned(s, ms)).get_next(datetime))


def ticks_missed(s: Schedule, now_ms: int) -> list[int]:
    """The latest `catch_up_max` ticks in [next_ms, now_ms], oldest first (the due tick included)."""
    if s.next_ms is None or s.next_ms > now_ms or s.catch_up_max == 0:
        return []
    out: list[int] = []
    if s.every_ms is not None:
        last = s.anchor_ms + (now_ms - s.anchor_ms) // s.every_ms * s.every_ms
        t = last
        while t >= s.next_ms and len(out) < s.catch_up_max:
            out.append(t)
            t -= s.every_ms
    else:
        assert s.cron is not None
        it = croniter(s.cron, _zoned(s, now_ms + 1))
        while len(out) < s.catch_up_max:
            t = _ms(it.get_prev(datetime))
            if t < s.next_ms:
                break
            out.append(t)
    return sorted(out)


def count_ticks(s: Schedule, from_ms: int, to_ms: int, cap: int = 100_000) -> int:
    """Ticks in [from_ms, to_ms] (at most `cap`, to bound a long downtime's count)."""
    if s.every_ms is not None:
        first = tick_after(s, from_ms - 1)
        return 0 if first > to_ms else min(cap, (to_ms - first) // s.every_ms + 1)
    n, t = 0, tick_after(s, from_ms - 1)
    while t <= to_ms and n < cap:
        n += 1
        t = tick_after(s, t)
    return n


def next_runs(s: Schedule, from_ms: int, n: int) -> list[int]:
    """`n` ticks from `from_ms` (included)."""
    out = [from_ms]
    while len(out) < n:
        out.append(tick_after(s, out[-1]))
    return out


def timer_id(name: str) -> bytes:
    """The 24-byte id a schedule's timer rows carry (no invocation has it)."""
    return hashlib.sha256(f"perdure-schedule:{name}".encode()).digest()[:24]


def tick_key(name: str, tick_ms: int) -> str:
    return f"schedule:{name}:{tick_ms}"


def _json_or_text(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace")
