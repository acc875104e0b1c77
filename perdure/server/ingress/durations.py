"""Durations as the ingress accepts them: friendly (`10s`, `1500ms`, `1h 2m`)
or ISO 8601 (`PT2S`, `P1D`)."""

from __future__ import annotations

import re

_UNITS_MS: dict[str, float] = {
    "ns": 1e-6,
    "us": 1e-3,
    "µs": 1e-3,
    "ms": 1,
    "s": 1000,
    "sec": 1000,
    "secs": 1000,
    "second": 1000,
    "seconds": 1000,
    "m": 60_000,
    "min": 60_000,
    "mins": 60_000,
    "minute": 60_000,
    "minutes": 60_000,
    "h": 3_600_000,
    "hr": 3_600_000,
    "hrs": 3_600_000,
    "hour": 3_600_000,
    "hours": 3_600_000,
    "d": 86_400_000,
    "day": 86_400_000,
    "days": 86_400_000,
    "w": 604_800_000,
    "week": 604_800_000,
    "weeks": 604_800_000,
}
_FRIENDLY = re.compile(r"\s*(\d+)\s*([a-zµ]+)\s*")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


class DurationError(ValueError):
    pass


def parse_duration_ms(text: str) -> int:
    text = text.strip()
    if text.startswith("P"):
        m = _ISO.match(text)
        if m is None or text in ("P", "PT"):
            raise DurationError(f"invalid ISO8601 duration '{text}'")
        total = 0.0
        for group, unit in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
            if m.group(group):
                total += float(m.group(group)) * unit
        return int(total)
    pos = 0
    total = 0.0
    if not text:
        raise DurationError("value was empty")
    while pos < len(text):
        m = _FRIENDLY.match(text, pos)
        if m is None:
            if text[pos:].strip().isdigit():
                raise DurationError("time unit needed, for example 500ms or 10s")
            raise DurationError(f"expected a number followed by a unit at position {pos}")
        unit_ms = _UNITS_MS.get(m.group(2))
        if unit_ms is None:
            raise DurationError(f"unknown time unit '{m.group(2)}'")
        total += int(m.group(1)) * unit_ms
        pos = m.end()
    return int(total)
