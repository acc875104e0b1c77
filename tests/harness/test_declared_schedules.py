"""Schedules declared next to their handler (`@perdure.schedule`, `perdure.schedule_metadata` for
the official SDK), applied when the deployment registers: created, ticking with their body,
unchanged by a re-registration (no re-arm, no second tick, an operator's pause kept), replaced
when the declaration changes, deleted when it goes, and a malformed one refuses the registration.
The end-to-end run through `perdure server` and the official CLI is in
tests/compat/test_declared_schedules.py."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import restate

import perdure
from perdure.server.admin.declared_schedules import DeclarationError
from perdure.testing.harness import Harness

HOUR = timedelta(hours=1)
SEEN: list[Any] = []


def reports_app(declare: dict[str, Any] | None, *, above: bool = False) -> Any:
    """A Perdure SDK app whose `Reports/run` declares schedule 'hourly' with `declare` (or none)."""
    svc = perdure.Service("Reports")

    async def run(ctx: perdure.Context, req: dict[str, Any]) -> str:
        await ctx.run("seen", lambda: SEEN.append(req))
        return "ok"

    if declare is None:
        svc.handler(name="run")(run)
    elif above:  # @perdure.schedule above @svc.handler()
        perdure.schedule("hourly", **declare)(svc.handler(name="run")(run))
    else:
        svc.handler(name="run")(perdure.schedule("hourly", **declare)(run))
    return perdure.app(services=[svc])


async def schedule_rows(h: Harness) -> list[dict[str, Any]]:
    return await h.sql(
        "SELECT name, target, every, paused, fired, declared_by, next_run_at FROM perdure_schedules"
    )


async def ticks(h: Harness) -> list[dict[str, Any]]:
    return await h.sql(
        "SELECT id, idempotency_key, status FROM sys_invocation "
        "WHERE idempotency_key LIKE 'schedule:hourly:%'"
    )


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    SEEN.clear()
    async with Harness(reports_app({"every": HOUR, "body": {"kind": "hourly"}})) as harness:
        yield harness


async def test_a_declared_schedule_is_created_on_registration_and_ticks_with_its_body(h: Harness) -> None:
    (row,) = await schedule_rows(h)
    assert row["name"] == "hourly" and row["target"] == "Reports/run" and row["declared_by"] == "Reports"
    await h.advance(HOUR)
    (tick,) = await ticks(h)
    assert await h.attach(str(tick["id"])) == "ok"
    assert SEEN == [{"kind": "hourly"}]


async def test_registering_the_same_declaration_again_changes_nothing(h: Harness) -> None:
    await h.advance(HOUR)
    (before,) = await schedule_rows(h)
    await h.pause_schedule("hourly")
    await h.register(reports_app({"every": HOUR, "body": {"kind": "hourly"}}, above=True), name="again")
    (after,) = await schedule_rows(h)
    assert after["paused"] is True, "an operator's pause survives a re-registration"
    assert after["fired"] == before["fired"] == 1
    await h.resume_schedule("hourly")
    (resumed,) = await schedule_rows(h)
    await h.register(reports_app({"every": HOUR, "body": {"kind": "hourly"}}), name="third")
    (again,) = await schedule_rows(h)
    assert again["next_run_at"] == resumed["next_run_at"], "an unchanged declaration is not re-armed"
    await h.advance(HOUR)
    assert len(await ticks(h)) == 2, "one tick per hour, none doubled by the registrations"


async def test_a_changed_declaration_replaces_the_schedule_and_a_removed_one_deletes_it(h: Harness) -> None:
    await h.advance(HOUR)
    await h.register(reports_app({"every": "30m", "body": {"kind": "half"}}), name="faster")
    (row,) = await schedule_rows(h)
    assert row["every"] == "PT1800S" and row["fired"] == 1, "replaced, counters kept"
    await h.advance(timedelta(minutes=30))
    latest = max(await ticks(h), key=lambda t: int(str(t["idempotency_key"]).rsplit(":", 1)[1]))
    assert await h.attach(str(latest["id"])) == "ok"
    assert SEEN[-1] == {"kind": "half"}
    await h.register(reports_app(None), name="gone")
    assert await schedule_rows(h) == []


async def test_an_operators_schedule_is_not_deleted_by_a_registration(h: Harness) -> None:
    await h.register(reports_app(None), name="none")
    await h.schedule("hourly", target="Reports/run", body={}, every="1h")
    other = perdure.Service("Other")

    @other.handler()
    async def noop(ctx: perdure.Context) -> None:
        return None

    await h.register(perdure.app(services=[other]), name="other")
    await h.register(reports_app(None), name="none-again")
    assert [r.get("declared_by") for r in await schedule_rows(h)] == [None]


async def test_a_malformed_declaration_refuses_the_registration(h: Harness) -> None:
    with pytest.raises(DeclarationError, match="invalid cron expression"):
        await h.register(reports_app({"cron": "every tuesday"}), name="bad")
    with pytest.raises(ValueError, match="exactly one of 'cron' and 'every'"):
        perdure.schedule("both", cron="* * * * *", every=HOUR)
    assert (await schedule_rows(h))[0]["every"] == "PT3600S"


async def test_the_official_sdk_declares_through_handler_metadata() -> None:
    job = restate.VirtualObject("Counter")

    @job.handler(metadata=perdure.schedule_metadata("count-a", every=HOUR, key="a", body=1))
    async def add(ctx: restate.ObjectContext, n: int) -> int:
        total = (await ctx.get("total", type_hint=int) or 0) + n
        ctx.set("total", total)
        return total

    async with Harness(restate.app(services=[job])) as h:
        (row,) = await h.sql("SELECT target, declared_by FROM perdure_schedules")
        assert row == {"target": "Counter/a/add", "declared_by": "Counter"}
        await h.advance(HOUR)
        await h.advance(HOUR)
        rows = await h.sql("SELECT id FROM sys_invocation WHERE idempotency_key LIKE 'schedule:count-a:%'")
        assert sorted([await h.attach(str(r["id"])) for r in rows]) == [1, 2]
        assert h.state("Counter", "a") == {"total": 2}
