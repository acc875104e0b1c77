"""`perdure.testing.Harness` (issue 15): Perdure in-process on a temporary SQLite store, with a
clock the test moves. A workflow that sleeps 30 days between two steps finishes once the
harness clock has moved 30 days, with both SDKs; assertions are on that clock, not wall time."""

from __future__ import annotations

from datetime import timedelta

import pytest

from perdure.testing.harness import Harness, HarnessError, harness_fixture
from tests.harness.services import WAIT, official_app, perdure_app

harness = harness_fixture(perdure_app)


@pytest.mark.parametrize("app", [official_app, perdure_app], ids=["official-sdk", "perdure-sdk"])
async def test_a_thirty_day_sleep_ends_when_the_harness_clock_passes_it(app: object) -> None:
    async with Harness(app) as h:
        started = h.now
        inv = await h.send("Onboarding/ann/run", "Ann")
        await h.wait_for_entry(inv, "Command: Sleep")
        assert h.state("Onboarding", "ann") == {"stage": "waiting"}
        assert not h.completed(inv)
        await h.advance(WAIT - timedelta(hours=1))
        assert not h.completed(inv), "woke before its time"
        await h.advance(timedelta(hours=1, seconds=1))
        result = await h.attach(inv)
        assert result["name"] == "Ann"
        assert h.now - started >= WAIT
        assert h.state("Onboarding", "ann") == {"stage": "done"}
        entries = [r["entry_type"] for r in await h.journal(inv)]
        assert "Command: Sleep" in entries and "Notification: Sleep" in entries


@pytest.mark.parametrize("app", [official_app, perdure_app], ids=["official-sdk", "perdure-sdk"])
async def test_a_sleep_started_after_an_advance_lasts_its_time_on_the_harness_clock(app: object) -> None:
    """SDKs compute wake-up times from their wall clock; the harness moves them onto its own."""
    async with Harness(app) as h:
        first = await h.send("Onboarding/one/run", "One")
        await h.wait_for_entry(first, "Command: Sleep")
        await h.advance(WAIT + timedelta(seconds=1))
        assert (await h.attach(first))["name"] == "One"
        second = await h.send("Onboarding/two/run", "Two")
        await h.wait_for_entry(second, "Command: Sleep")
        await h.advance(timedelta(days=1))
        assert not h.completed(second), "the second sleep ended at the SDK's wall-clock time"
        await h.advance(WAIT)
        assert (await h.attach(second))["name"] == "Two"


async def test_the_fixture_calls_and_reports_errors(harness: Harness) -> None:
    with pytest.raises(HarnessError) as err:
        await harness.call("Nope/x")
    assert err.value.status == 404
    inv = await harness.send("Onboarding/bob/run", "Bob")
    await harness.wait_for_entry(inv, "Command: Sleep")
    await harness.advance(WAIT + timedelta(seconds=1))
    assert (await harness.attach(inv))["name"] == "Bob"
    rows = await harness.sql(f"SELECT status FROM sys_invocation WHERE id = '{inv}'")
    assert rows == [{"status": "completed"}]
