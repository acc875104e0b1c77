"""The overview, the invocation list and the invocation page, against what the server says."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime

import httpx
from playwright.sync_api import Page, expect

from tests.ui.conftest import Ui, wait_for


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def _backing_off(ui: Ui) -> str:
    """A Flaky invocation past its first retry, waiting for the next one."""
    inv = ui.send("Flaky/charge", _tag())

    def ready() -> bool:
        row = ui.row(inv)
        return bool(row and row["status"] == "backing-off" and int(row.get("retry_count", 0)) >= 2)

    wait_for("a second failed attempt", ready)
    return inv


def test_overview_counts_by_status_match_sql_and_list_services(page: Page, ui: Ui) -> None:
    ui.call("Greeter/greet", "overview")
    _backing_off(ui)
    page.goto("/ui/?window=1h")
    expect(page.locator("[data-service=Flaky]")).to_contain_text("Service")
    for name, ty in (("Counter", "VirtualObject"), ("Signup", "Workflow"), ("Greeter", "Service")):
        expect(page.locator(f"[data-service={name}]")).to_contain_text(ty)
        expect(page.locator(f"[data-service={name}]")).to_contain_text("rev 1")

    def page_matches_sql() -> bool:
        since = page.evaluate("new Date(Date.now() - 3600e3).toISOString()")
        rows = ui.sql(
            f"SELECT status, count(*) AS n FROM sys_invocation WHERE created_at >= '{since}' GROUP BY status"
        )
        want = {r["status"]: r["n"] for r in rows}
        shown = {
            s: int(page.locator(f"#status-counts [data-status='{s}'] .count").inner_text())
            for s in ("completed", "backing-off", "running", "suspended")
        }
        return all(shown[s] == want.get(s, 0) for s in shown) and shown["completed"] >= 1

    wait_for("the overview's counts to equal the SQL counts", page_matches_sql)
    flaky_open = ui.sql(
        "SELECT count(*) AS n FROM sys_invocation "
        "WHERE target_service_name = 'Flaky' AND status <> 'completed'"
    )[0]["n"]
    expect(page.locator("[data-service=Flaky] .not-completed .n")).to_have_text(str(flaky_open))


def test_list_filters_live_in_the_url_and_survive_a_reload(page: Page, ui: Ui) -> None:
    inv = _backing_off(ui)
    page.goto("/ui/invocations")
    page.locator("#filters input[value=backing-off]").check()
    page.locator("#filters select[name=service]").select_option("Flaky")
    page.locator("#filters button[type=submit]").click()
    expect(page).to_have_url(
        re.compile(r"status=backing-off.*service=Flaky|service=Flaky.*status=backing-off")
    )
    page.reload()
    expect(page.locator(f"#invocations tr[data-id='{inv}']")).to_be_visible()
    want = {
        r["id"]
        for r in ui.sql(
            "SELECT id FROM sys_invocation WHERE status = 'backing-off' AND target_service_name = 'Flaky'"
        )
    }
    shown = set(page.locator("#invocations tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)"))
    assert shown == want
    expect(page.locator("#filters input[value=backing-off]")).to_be_checked()


def test_pages_through_every_row_without_gaps_or_duplicates_and_back(page: Page, ui: Ui) -> None:
    key = f"page-{_tag()}"
    sent = {ui.send(f"Counter/{key}/add", 1) for _ in range(57)}
    wait_for(
        "the adds to finish",
        lambda: (
            ui.sql(
                f"SELECT count(*) AS n FROM sys_invocation WHERE target_service_key = '{key}' "
                "AND status = 'completed'"
            )[0]["n"]
            == 57
        ),
    )
    page.goto(f"/ui/invocations?service=Counter&key={key}&limit=10")
    expect(page.locator("#match-count")).to_have_text("57 matching")
    seen: list[list[str]] = []
    while True:
        expect(page.locator("#invocations tbody tr").first).to_be_visible()
        ids = page.locator("#invocations tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
        seen.append(ids)
        nxt = page.locator("[data-page=next]")
        if nxt.count() == 0:
            break
        nxt.click()
        expect(page.locator(f"#invocations tbody tr[data-id='{ids[0]}']")).to_have_count(0)
    flat = [i for p in seen for i in p]
    assert len(flat) == len(set(flat)) == 57
    assert set(flat) == sent
    created = [
        r["created_at"]
        for r in ui.sql(
            f"SELECT created_at FROM sys_invocation WHERE target_service_key = '{key}' "
            "ORDER BY created_at DESC, id DESC"
        )
    ]
    assert [len(p) for p in seen] == [10, 10, 10, 10, 10, 7] and len(created) == 57
    page.locator("[data-page=prev]").click()
    expect(page.locator(f"#invocations tbody tr[data-id='{seen[-2][0]}']")).to_be_visible()
    back = page.locator("#invocations tbody tr").evaluate_all("rows => rows.map(r => r.dataset.id)")
    assert back == seen[-2]
    # Oldest first after sorting by creation time ascending.
    page.locator("[data-sort=created_at]").click()
    expect(page).to_have_url(re.compile(r"dir=asc"))
    oldest = ui.sql(
        f"SELECT id FROM sys_invocation WHERE target_service_key = '{key}' "
        "ORDER BY created_at ASC, id ASC LIMIT 1"
    )[0]["id"]
    expect(page.locator("#invocations tbody tr").first).to_have_attribute("data-id", oldest)


def test_jump_by_id_idempotency_key_and_workflow_key(page: Page, ui: Ui) -> None:
    ik = f"ik-{_tag()}"
    by_key = ui.send("Greeter/greet", "jump", **{"idempotency-key": ik})
    wf_key = f"wf-{_tag()}"
    run = ui.send(f"Signup/{wf_key}/run", f"{wf_key}@example.com")
    for text, want in ((by_key, by_key), (ik, by_key), (wf_key, run)):
        page.goto("/ui/invocations")
        page.fill("#jump", text)
        page.press("#jump", "Enter")
        expect(page).to_have_url(re.compile(f"/ui/invocations/{want}$"))
        expect(page.locator("#invocation-id")).to_have_text(want)
    page.goto("/ui/invocations")
    page.fill("#jump", "no-such-key")
    page.press("#jump", "Enter")
    expect(page.locator(".not-found")).to_contain_text(
        'No invocation with id, idempotency key or workflow key "no-such-key"'
    )
    page.goto("/ui/invocations/inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")
    expect(page.locator("#not-found")).to_contain_text(
        "No invocation with id inv_1aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    )


def test_invocation_page_shows_the_retrying_error_stack_and_next_retry(page: Page, ui: Ui) -> None:
    inv = _backing_off(ui)
    page.goto(f"/ui/invocations/{inv}")
    expect(page.locator("#status .badge")).to_have_attribute("data-status", "backing-off")
    expect(page.locator("#status .badge")).to_contain_text(re.compile(r"backing-off · \d+ attempts"))
    expect(page.locator("#last-error")).to_contain_text("transient failure: payment gateway timed out")
    expect(page.locator("#stack-trace")).to_contain_text("Traceback")
    expect(page.locator("#last-error")).to_contain_text('Run "charge"')
    next_at = page.locator("#next-retry").get_attribute("data-at")
    assert next_at is not None and datetime.fromisoformat(next_at) > datetime(2000, 1, 1, tzinfo=UTC)
    row = ui.row(inv)
    assert row is not None and row["next_retry_at"] == next_at
    expect(page.locator("#next-retry")).to_contain_text("Next retry in")
    expect(page.locator("#next-retry-marker")).to_be_attached()
    expect(page.locator("[data-field=attempts] .v")).to_have_text(str(row["retry_count"]))
    expect(page.locator("[data-field=sdk] .v")).to_contain_text("restate-sdk-python/1.3.0")
    expect(page.locator("#journal [data-index='1']")).to_contain_text('run("charge")')


def test_journal_timeline_lists_entries_in_order_with_results(page: Page, ui: Ui) -> None:
    ui.call("Greeter/greet", "Timeline")
    inv = ui.sql(
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Greeter' ORDER BY created_at DESC LIMIT 1"
    )[0]["id"]
    page.goto(f"/ui/invocations/{inv}")
    rows = page.locator("#journal .jrow")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text('input("Timeline")')
    expect(rows.nth(1)).to_contain_text('run("build") → "Hello, Timeline!"')
    expect(rows.nth(2)).to_contain_text('return "Hello, Timeline!"')
    page.locator("#journal-mode").select_option("detailed")
    expect(rows).to_have_count(4)
    expect(rows.nth(2)).to_have_attribute("data-type", "Notification: Run")
    page.locator("#journal-filter").fill("build")
    expect(rows).to_have_count(1)
    journal = ui.sql(f"SELECT index, entry_type FROM sys_journal WHERE id = '{inv}' ORDER BY index")
    assert [r["entry_type"] for r in journal] == [
        "Command: Input",
        "Command: Run",
        "Notification: Run",
        "Command: Output",
    ]


def test_call_graph_expands_the_callee_inline_and_links_both_ways(page: Page, ui: Ui) -> None:
    name = f"cg{_tag()}"
    assert ui.call("Caller/chain", name) == {"greeting": f"Hello, {name}!"}
    caller = ui.sql(
        "SELECT id FROM sys_invocation WHERE target_service_name = 'Caller' AND created_at >= '2000' "
        "ORDER BY created_at DESC LIMIT 1"
    )[0]["id"]
    page.goto(f"/ui/invocations/{caller}")
    call_row = page.locator("#journal .jrow[data-depth='0']", has_text="call(Greeter/greet)")
    expect(call_row).to_contain_text(f'→ "Hello, {name}!"')
    call_row.locator("button.expand").click()
    expect(page.locator("#journal .jrow[data-depth='1']", has_text='run("build")')).to_be_visible()
    send_row = page.locator("#journal .jrow", has_text=f"send(Counter/{name}/add)")
    callee = send_row.locator("button.expand").get_attribute("data-callee")
    assert callee is not None
    send_row.locator("a.callee-link").click()
    expect(page.locator("#invocation-id")).to_have_text(callee)
    expect(page.locator("[data-field=invoked_by]")).to_contain_text(caller)
    counter = ui.row(callee)
    assert counter is not None and counter["invoked_by_id"] == caller
    page.locator("[data-field=invoked_by] a").click()
    expect(page.locator("#invocation-id")).to_have_text(caller)


def test_page_follows_a_running_invocation_live(page: Page, ui: Ui) -> None:
    key = f"live-{_tag()}"
    run = ui.send(f"Signup/{key}/run", f"{key}@example.com")
    wait_for("the workflow to wait on its promise", lambda: ui.status(run) in ("running", "suspended"))
    page.goto(f"/ui/invocations/{run}")
    expect(page.locator("#live")).to_have_text("● live")
    expect(page.locator("#journal")).to_contain_text('promise("approval") … pending')
    resp = httpx.post(f"{ui.ingress}/Signup/{key}/approve", json="approved", timeout=30)
    assert resp.status_code == 200, resp.text
    expect(page.locator("#status .badge")).to_have_attribute("data-status", "completed")
    expect(page.locator("#journal")).to_contain_text('promise("approval") → "approved"')
    expect(page.locator("#journal")).to_contain_text(f'return "{key}@example.com: approved"')
