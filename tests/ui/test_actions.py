"""Actions from the UI change the server's state: cancel, kill, pause, resume, purge, one at a
time with a confirmation, and in batches over a filter with a count preview and progress."""

from __future__ import annotations

import uuid

from playwright.sync_api import Page, expect

from tests.ui.conftest import Ui, wait_for

LONG_NAP_MS = 600_000


def _act(page: Page, op: str) -> None:
    page.locator(f"#actions button[data-op='{op}']").click()
    page.locator("dialog button[data-action=ok]").click()
    expect(page.locator("dialog")).to_have_count(0)


def _nap(ui: Ui) -> str:
    inv = ui.send("Sleeper/nap", LONG_NAP_MS)
    wait_for("the nap to start", lambda: ui.status(inv) in ("running", "suspended"))
    return inv


def test_cancel_from_the_page_completes_the_invocation_as_cancelled(page: Page, ui: Ui) -> None:
    inv = _nap(ui)
    page.goto(f"/ui/invocations/{inv}")
    expect(page.locator("#actions button[data-op=purge]")).to_have_count(0)
    _act(page, "cancel")
    row = wait_for("the cancel to land", lambda: (r := ui.row(inv)) and r["status"] == "completed" and r)
    assert row["completion_failure"] == "[409] cancelled"
    expect(page.locator("#status .badge")).to_have_attribute("data-status", "completed")
    expect(page.locator("#completion-result")).to_have_text("failure")


def test_kill_from_the_page(page: Page, ui: Ui) -> None:
    inv = _nap(ui)
    page.goto(f"/ui/invocations/{inv}")
    _act(page, "kill")
    row = wait_for("the kill to land", lambda: (r := ui.row(inv)) and r["status"] == "completed" and r)
    assert row["completion_failure"] == "[409] killed"
    expect(page.locator("#status .badge")).to_have_attribute("data-status", "completed")


def test_pause_then_resume_from_the_page(page: Page, ui: Ui) -> None:
    inv = ui.send("Flaky/charge", uuid.uuid4().hex[:8])
    wait_for("a failed attempt", lambda: ui.status(inv) == "backing-off")
    page.goto(f"/ui/invocations/{inv}")
    _act(page, "pause")
    wait_for("the pause", lambda: ui.status(inv) == "paused")
    expect(page.locator("#status .badge")).to_have_attribute("data-status", "paused")
    expect(page.locator("#actions button[data-op=pause]")).to_have_count(0)
    _act(page, "resume")
    wait_for("the resume", lambda: ui.status(inv) not in ("paused", None))
    expect(page.locator("#status .badge")).not_to_have_attribute("data-status", "paused")


def test_purge_a_completed_invocation_from_the_page(page: Page, ui: Ui) -> None:
    ui.call("Greeter/greet", "purge-me")
    inv = ui.sql(
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Greeter' ORDER BY created_at DESC LIMIT 1"
    )[0]["id"]
    page.goto(f"/ui/invocations/{inv}")
    expect(page.locator("#actions button[data-op=cancel]")).to_have_count(0)
    _act(page, "purge")
    wait_for("the purge", lambda: ui.row(inv) is None)
    expect(page.locator("#not-found")).to_contain_text("no longer exists")


def test_batch_cancel_over_a_filter_with_count_preview_and_progress(page: Page, ui: Ui) -> None:
    n = 24
    ids = {ui.send("Sleeper/nap", LONG_NAP_MS + i) for i in range(n)}
    # Only these naps are open: earlier tests cancelled or killed theirs.
    open_naps = (
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Sleeper' AND status <> 'completed'"
    )
    wait_for("the naps to start", lambda: {r["id"] for r in ui.sql(open_naps)} == ids)
    page.goto("/ui/invocations?service=Sleeper&status=not-completed")
    expect(page.locator("#match-count")).to_have_text(f"{n} matching")
    page.locator("#batch-action").select_option("cancel")
    expect(page.locator("dialog .batch-count")).to_contain_text(f"Cancel {n} invocations matching")
    page.locator("dialog button[data-action=ok]").click()
    expect(page.locator("dialog .progress .text")).to_have_text(f"{n}/{n} done, 0 failed")
    page.locator("dialog button[data-action=ok]").click()
    wait_for("every nap to be cancelled", lambda: ui.sql(open_naps) == [])
    rows = ui.sql(
        "SELECT id, completion_failure FROM sys_invocation WHERE target_service_name = 'Sleeper' "
        "AND status = 'completed'"
    )
    cancelled = {r["id"] for r in rows if r.get("completion_failure") == "[409] cancelled"}
    assert ids <= cancelled
