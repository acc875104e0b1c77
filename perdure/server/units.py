"""Restate's duration and size syntax, parsed and printed (sans-IO).

Durations come in two dialects, as Restate accepts them: the *friendly* one (`500ms`, `1m`,
`1h 30m`, `1 hour, 30 minutes`, `1.5s`) read by a small scanner below, and ISO 8601 (`PT2S`,
`P1D`) read by `isodate`. Sizes are byte counts (`32 MiB`, `32.0 MiB`, `64KB`, `1048576`):
decimal units are powers of 1000, `Ki`/`Mi`/... powers of 1024. Printing follows Restate's
`--dump-config`: `1s 500ms`, `32.0 MiB`.
"""

from __future__ import annotations

import datetime

import isodate

# Friendly unit names -> milliseconds. Calendar units (months, years) have no fixed length
# and are refused, as Restate refuses them for a duration.
_UNIT_MS: dict[str, float] = {}
for _names, _ms in (
    (("w", "wk", "wks", "week", "weeks"), 604_800_000.0),
    (("d", "day", "days"), 86_400_000.0),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000.0),
    (("m", "min", "mins", "minute", "minutes"), 60_000.0),
    (("s", "sec", "secs", "second", "seconds"), 1000.0),
    (("ms", "msec", "msecs", "millisecond", "milliseconds"), 1.0),
    (("us", "µs", "usec", "usecs", "microsecond", "microseconds"), 1e-3),
    (("ns", "nsec", "nsecs", "nanosecond", "nanoseconds"), 1e-6),
):
    for _name in _names:
        _UNIT_MS[_name] = _ms
_CALENDAR_UNITS = frozenset(("y", "yr", "yrs", "year", "years", "mo", "mos", "month", "months"))

_SIZE_UNITS: dict[str, int] = {"": 1, "b": 1}
for _i, _letter in enumerate("kmgtp", start=1):
    _SIZE_UNITS[_letter] = _SIZE_UNITS[f"{_letter}b"] = 1000**_i
    _SIZE_UNITS[f"{_letter}i"] = _SIZE_UNITS[f"{_letter}ib"] = 1024**_i
_BINARY_NAMES = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


class DurationError(ValueError):
    """Not a duration; the message says where and why, in the words Restate uses."""


class SizeError(ValueError):
    """Not a byte size."""


class _Scanner:
    """Reads `<number> <unit>` pairs left to right; no backtracking."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_separators(self) -> None:
        while self.pos < len(self.text) and (self.text[self.pos].isspace() or self.text[self.pos] == ","):
            self.pos += 1

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def number(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isdigit() or self.text[self.pos] == "."):
            self.pos += 1
        return self.text[start : self.pos]

    def word(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalpha()):
            self.pos += 1
        return self.text[start : self.pos]

    def spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1


def parse_duration_ms(text: str) -> int:
    """Milliseconds of a friendly or ISO 8601 duration (fractions of a millisecond dropped)."""
    text = text.strip()
    if not text:
        raise DurationError("value was empty")
    if text[0] in "Pp" or text[:2] in ("+P", "-P"):
        return _parse_iso_ms(text)
    scan = _Scanner(text)
    if text[0] in "+-":
        if text[0] == "-":
            raise DurationError("a duration cannot be negative")
        scan.pos = 1
    total_ms = 0.0
    pairs = 0
    while True:
        scan.skip_separators()
        if scan.at_end():
            break
        number = scan.number()
        if not number or number.count(".") > 1 or number in (".",):
            raise DurationError(
                "expected duration to start with a unit value (a decimal integer) after an "
                f"optional sign, but no integer was found at position {scan.pos}"
            )
        scan.spaces()
        unit = scan.word()
        if not unit:
            raise DurationError(f"expected a unit after '{number}' (for example 500ms or 10s)")
        if unit in _CALENDAR_UNITS:
            raise DurationError(f"unit '{unit}' has no fixed length; use days or smaller")
        unit_ms = _UNIT_MS.get(unit.lower())
        if unit_ms is None:
            raise DurationError(f"unknown time unit '{unit}'")
        total_ms += float(number) * unit_ms
        pairs += 1
    if pairs == 0:
        raise DurationError("value was empty")
    return int(total_ms)


def _parse_iso_ms(text: str) -> int:
    if text.upper().lstrip("+-") in ("P", "PT"):
        raise DurationError(f"invalid ISO 8601 duration '{text}': no value")
    try:
        value = isodate.parse_duration(text.upper())
    except (isodate.ISO8601Error, ValueError) as exc:
        raise DurationError(f"invalid ISO 8601 duration '{text}': {exc}") from None
    if not isinstance(value, datetime.timedelta):
        raise DurationError(f"ISO 8601 duration '{text}' has months or years, which have no fixed length")
    if value < datetime.timedelta(0):
        raise DurationError("a duration cannot be negative")
    return value // datetime.timedelta(milliseconds=1)


def format_duration(ms: int) -> str:
    """`1d`, `500ms`, `1s 500ms`: the duration format of Restate's admin API and config dump."""
    if ms <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    return " ".join(parts)


def parse_size_bytes(text: str | int) -> int:
    """Bytes of `32 MiB`, `32.0 MiB`, `64KB`, `1048576` (a plain number is bytes)."""
    if isinstance(text, int):
        if text < 0:
            raise SizeError("a size cannot be negative")
        return text
    scan = _Scanner(text.strip())
    number = scan.number()
    scan.spaces()
    unit = scan.word()
    scan.spaces()
    if not number or number.count(".") > 1 or not scan.at_end():
        raise SizeError(f"'{text}' is not a size (for example 32 MiB, 512KB or 1048576)")
    factor = _SIZE_UNITS.get(unit.lower())
    if factor is None:
        raise SizeError(f"unknown size unit '{unit}' in '{text}' (B, KB, KiB, MB, MiB, GB, GiB, ...)")
    return int(float(number) * factor)


def format_size(n: int) -> str:
    """`32.0 MiB`, `512 B`: binary units with one decimal, as Restate prints sizes."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for name in _BINARY_NAMES[1:]:
        value /= 1024
        if value < 1024 or name == _BINARY_NAMES[-1]:
            return f"{value:.1f} {name}"
    raise AssertionError("unreachable")
