"""Schedules on the harness clock (issue 15): one test per overlap policy, catch-up after
downtime within its limit, pause and resume, cron in a time zone with its next runs in SQL.
Ticks are an hour apart and the clock jumps by hours, so the real time a test takes never
makes a tick due by itself."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from perdure.testing.harness import Harness, HarnessError
from tests.harness import jobs

HOUR = timedelta(hours=1)


@pytest.fixture
async def h() -> AsyncIterator[Harness]:
    jobs.HELD.clear()
    async with Harness(jobs.app) as harness:
        yield harness


async def tick_invocations(h: Harness, name: str) -> list[dict[str, object]]:
    return await h.sql(
        "SELECT id, idempotency_key, status FROM sys_invocation "
        f"WHERE idempotency_key LIKE 'schedule:{name}:%' ORDER BY idempotency_key"
    )


async def held(count: int) -> None:
    async with asyncio.timeout(30):
        while len(jobs.HELD) < count:
            await asyncio.sleep(0.01)


async def schedule_row(h: Harness, name: str) -> dict[str, object]:
    (row,) = await h.sql(f"SELECT * FROM perdure_schedules WHERE name = '{name}'")
    return row


async def test_skip_drops_ticks_while_the_previous_one_runs(h: Harness) -> None:
    await h.schedule("s", target="Job/hold", body={}, every="1h", overlap="skip")
    await h.advance(HOUR)
    await held(1)
    await h.advance(HOUR)
    await h.advance(HOUR)
    assert len(await tick_invocations(h, "s")) == 1
    await h.resolve_awakeable(jobs.HELD[0], "done")
    (first,) = await tick_invocations(h, "s")
    assert await h.attach(str(first["id"])) == "done"
    await h.advance(HOUR)
    await held(2)
    assert len(await tick_invocations(h, "s")) == 2
    assert (await schedule_row(h, "s"))["skipped"] == 2


async def test_buffer_one_runs_the_latest_waiting_tick_when_the_running_one_ends(h: Harness) -> None:
    await h.schedule("b", target="Job/hold", body={}, every="1h", overlap="buffer_one")
    await h.advance(HOUR)
    await held(1)
    await h.advance(HOUR)  # buffered
    await h.advance(HOUR)  # replaces the buffered one
    assert len(await tick_invocations(h, "b")) == 1
    await h.resolve_awakeable(jobs.HELD[0], "done")
    await held(2)  # the buffered tick starts without another tick
    ticks = await tick_invocations(h, "b")
    assert len(ticks) == 2
    first_ms, second_ms = (int(str(t["idempotency_key"]).rsplit(":", 1)[1]) for t in ticks)
    assert second_ms - first_ms == 2 * 3_600_000, "the latest waiting tick ran"
    assert (await schedule_row(h, "b"))["skipped"] == 1


async def test_allow_starts_every_tick_even_while_others_run(h: Harness) -> None:
    await h.schedule("a", target="Job/hold", body={}, every="1h", overlap="allow")
    for n in range(1, 4):
        await h.advance(HOUR)
        await held(n)
    ticks = await tick_invocations(h, "a")
    assert len(ticks) == 3 and all(t["status"] != "completed" for t in ticks)


async def test_catch_up_after_downtime_runs_at_most_the_limit(h: Harness) -> None:
    await h.schedule("c", target="Job/quick", body={"tag": "c"}, every="1h", catch_up_max=2)
    await h.advance(5 * HOUR)  # five ticks missed at once
    ticks = await tick_invocations(h, "c")
    assert len(ticks) == 2
    row = await schedule_row(h, "c")
    assert (row["fired"], row["skipped"]) == (2, 3)


async def test_pause_stops_ticks_and_resume_starts_from_now(h: Harness) -> None:
    await h.schedule("p", target="Job/quick", body={}, every="1h", catch_up_max=10)
    paused = await h.pause_schedule("p")
    assert paused["paused"] and paused["next_ms"] is None
    assert "next_run_at" not in await schedule_row(h, "p")
    await h.advance(3 * HOUR)
    assert await tick_invocations(h, "p") == []
    resumed = await h.resume_schedule("p")
    assert resumed["next_ms"] > h.clock.now_ms()
    await h.advance(HOUR)
    assert len(await tick_invocations(h, "p")) == 1, "no catch-up of the paused hours"


async def test_cron_in_a_time_zone_shows_its_next_runs_in_sql(h: Harness) -> None:
    await h.schedule("daily", target="Job/quick", body={}, cron="0 9 * * *", timezone="Europe/Paris")
    row = await schedule_row(h, "daily")
    runs = [datetime.fromisoformat(str(t).replace("Z", "+00:00")) for t in row["next_runs"]]  # type: ignore[attr-defined]
    assert len(runs) == 5
    paris = [r.astimezone(ZoneInfo("Europe/Paris")) for r in runs]
    assert all((p.hour, p.minute) == (9, 0) for p in paris)
    assert [b - a for a, b in itertools.pairwise(paris)] == [timedelta(days=1)] * 4
    assert row["next_run_at"] == row["next_runs"][0]  # type: ignore[index]
    assert runs[0] > h.now
    await h.advance(timedelta(days=1))
    assert len(await tick_invocations(h, "daily")) == 1


async def test_bad_schedules_are_refused(h: Harness) -> None:
    for spec, status in (
        ({"target": "Job/quick", "cron": "not cron"}, 422),
        ({"target": "Job/quick", "every": "1h", "cron": "* * * * *"}, 422),
        ({"target": "Job/quick", "every": "1h", "timezone": "Mars/Olympus"}, 422),
        ({"target": "Job/quick", "every": "1h", "overlap": "sometimes"}, 422),
        ({"target": "Job/nope", "every": "1h"}, 404),
    ):
        with pytest.raises((HarnessError, ValueError, LookupError)) as err:
            await h.schedule("bad", **spec)
        assert getattr(err.value, "status", 422 if not isinstance(err.value, LookupError) else 404) == status
