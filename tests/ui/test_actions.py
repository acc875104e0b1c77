"""Actions from the UI change the server's state: cancel, kill, pause, resume, purge, one at a
time with a confirmation, and in batches over a filter with a count preview and progress."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
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


def _openapi_paths(ui: Ui) -> dict[str, Any]:
    paths: dict[str, Any] = httpx.get(f"{ui.admin}/openapi", timeout=30).json()["paths"]
    return paths


def test_restart_as_new_is_offered_exactly_when_the_server_has_it(page: Page, ui: Ui) -> None:
    supported = "/invocations/{invocation_id}/restart-as-new" in _openapi_paths(ui)
    name = f"restart-{uuid.uuid4().hex[:6]}"
    ui.call("Greeter/greet", name)
    inv = ui.sql(
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Greeter' ORDER BY created_at DESC LIMIT 1"
    )[0]["id"]
    page.goto(f"/ui/invocations/{inv}")
    expect(page.locator("#actions button[data-op=purge]")).to_be_visible()
    button = page.locator("#actions button[data-op='restart-as-new']")
    if not supported:
        expect(button).to_have_count(0)
        return
    _act(page, "restart-as-new")
    expect(page.locator("#invocation-id")).not_to_have_text(inv)
    new = page.locator("#invocation-id").inner_text()
    wait_for("the restarted invocation to complete", lambda: ui.status(new) == "completed")
    expect(page.locator("#journal")).to_contain_text(f'input("{name}")')
    row = ui.row(new)
    assert row is not None and row["target"] == "Greeter/greet"


def test_retry_now_is_offered_exactly_when_the_server_has_it(page: Page, ui: Ui) -> None:
    resume = _openapi_paths(ui)["/invocations/{invocation_id}/resume"]["patch"]
    supported = "retry" in (resume.get("description", "") + resume.get("summary", "")).lower()
    inv = ui.send("Flaky/charge", uuid.uuid4().hex[:8])
    # After the second failure the next attempt is 20 s away: only "retry now" brings it sooner.
    row = wait_for(
        "a second failed attempt",
        lambda: (
            (r := ui.row(inv)) and r["status"] == "backing-off" and int(r.get("retry_count", 0)) >= 2 and r
        ),
    )
    page.goto(f"/ui/invocations/{inv}")
    expect(page.locator("#actions button[data-op=cancel]")).to_be_visible()
    button = page.locator("#actions button[data-op='retry-now']")
    if not supported:
        expect(button).to_have_count(0)
        return
    _act(page, "retry-now")
    wait_for(
        "an attempt before the back-off ran out",
        lambda: int((ui.row(inv) or {}).get("retry_count", 0)) > int(row["retry_count"]),
        timeout_s=15.0,
    )
