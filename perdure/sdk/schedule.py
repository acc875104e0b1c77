"""Schedules declared next to their handler: `@perdure.schedule(...)` records a cron or interval
schedule in the handler's discovery metadata, and Perdure creates it when the deployment
registers (docs/schedules.md). Metadata is a map of strings in Restate's manifest, so the
official CLI and the Restate server read such a manifest unchanged (Restate ignores it).

    @svc.handler()
    @perdure.schedule("nightly-report", cron="0 3 * * *", timezone="Europe/Paris", body={"full": True})
    async def report(ctx: perdure.Context, req: dict) -> None: ...

`schedule_metadata(...)` gives the same entry for the official SDK's `handler(metadata=...)`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, TypedDict, TypeVar, Unpack

from perdure.sdk.handler import handler_of

METADATA_PREFIX = "perdure.schedule."
PENDING_ATTR = "__perdure_schedules__"  # declarations made before the handler decorator ran
OVERLAP_POLICIES = ("skip", "buffer_one", "allow")

F = TypeVar("F")


class ScheduleOptions(TypedDict, total=False):
    """The fields of `PUT /schedules/{name}` a declaration gives (the target is the handler)."""

    cron: str  # exactly one of cron and every
    every: timedelta | str
    body: Any  # JSON the handler receives on every tick
    key: str  # the object or workflow key a keyed handler runs on
    timezone: str  # of the cron expression (default UTC)
    overlap: Literal["skip", "buffer_one", "allow"]  # default allow
    catch_up_max: int  # missed ticks run after downtime (default 1)
    paused: bool


def schedule_metadata(name: str, **options: Unpack[ScheduleOptions]) -> dict[str, str]:
    """The handler metadata entry that declares schedule `name`. The server checks it fully when
    the deployment registers (a malformed one refuses the registration)."""
    spec: dict[str, Any] = dict(options)
    if ("cron" in spec) == ("every" in spec):
        raise ValueError("give exactly one of 'cron' and 'every'")
    if spec.get("overlap", "allow") not in OVERLAP_POLICIES:
        raise ValueError(f"'overlap' must be one of {', '.join(OVERLAP_POLICIES)}")
    every = spec.get("every")
    if isinstance(every, timedelta):
        spec["every"] = f"{round(every.total_seconds() * 1000)}ms"
    spec.setdefault("body", None)
    return {METADATA_PREFIX + name: json.dumps(spec, sort_keys=True, separators=(",", ":"))}


def schedule(name: str, **options: Unpack[ScheduleOptions]) -> Callable[[F], F]:
    """Decorate a handler (above or below its `@svc.handler()`) to run it on a schedule."""
    entry = schedule_metadata(name, **options)

    def decorate(fn: F) -> F:
        try:
            handler = handler_of(fn)  # the handler decorator ran first
        except ValueError:
            setattr(fn, PENDING_ATTR, _merged(getattr(fn, PENDING_ATTR, None), entry, name))
        else:
            handler.options.metadata = _merged(handler.options.metadata, entry, name)
        return fn

    return decorate


def with_declared(metadata: dict[str, str] | None, fn: Any) -> dict[str, str] | None:
    """A handler's metadata with the schedules declared on `fn` before it became a handler."""
    pending: dict[str, str] | None = getattr(fn, PENDING_ATTR, None)
    if not pending:
        return metadata
    out = dict(metadata or {})
    for entry, value in pending.items():
        out = _merged(out, {entry: value}, entry[len(METADATA_PREFIX) :])
    return out


def _merged(metadata: dict[str, str] | None, entry: dict[str, str], name: str) -> dict[str, str]:
    out = dict(metadata or {})
    if out.keys() & entry.keys():
        raise ValueError(f"schedule '{name}' is declared twice on the same handler")
    out.update(entry)
    return out
