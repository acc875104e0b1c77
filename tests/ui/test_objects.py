"""Virtual objects (keys, lock holder, inbox in order), state (viewer and editor in JSON and
base64 mode), and workflows with their promises."""

from __future__ import annotations

import base64
import json
import os
import uuid

import httpx
from playwright.sync_api import Page, expect

from tests.ui.conftest import Ui, wait_for


def _key(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_object_page_shows_the_lock_holder_and_the_inbox_in_order(page: Page, ui: Ui) -> None:
    key, gate = _key("held"), _key("gate")
    holder = ui.send(f"Counter/{key}/hold", gate)
    wait_for("the hold to take the lock", lambda: ui.status(holder) == "running")
    queued = [ui.send(f"Counter/{key}/add", n) for n in (1, 2)]
    wait_for("both adds to queue", lambda: all(ui.status(i) == "pending" for i in queued))
    state_only = _key("state-only")
    resp = httpx.post(
        f"{ui.admin}/services/Counter/state",
        json={"object_key": state_only, "new_state": {"count": list(b"7")}},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    page.goto("/ui/virtual-objects?service=Counter")
    expect(page.locator(f"#keys tr[data-key='{key}'] .inbox-n")).to_have_text("2")
    expect(page.locator(f"#keys tr[data-key='{key}']")).to_contain_text(holder)
    expect(page.locator(f"#keys tr[data-key='{state_only}']")).to_be_visible()
    page.locator(f"#keys tr[data-key='{key}'] a").first.click()
    expect(page.locator("#lock-holder")).to_contain_text(holder)
    expect(page.locator("#lock-holder")).to_contain_text("hold")
    assert page.locator("#inbox li").evaluate_all("li => li.map(x => x.dataset.id)") == queued
    inbox = ui.sql(
        f"SELECT id FROM sys_inbox WHERE service_name = 'Counter' AND service_key = '{key}' "
        "ORDER BY sequence_number"
    )
    assert [r["id"] for r in inbox] == queued
    ui.open_gate(gate)
    wait_for("the queue to drain", lambda: all(ui.status(i) == "completed" for i in queued))
    page.reload()
    expect(page.locator("#lock-holder")).to_contain_text("none")
    expect(page.locator("#state-entries tr[data-key=count]")).to_contain_text("3")


def test_state_editor_in_json_mode_changes_what_the_handler_reads(page: Page, ui: Ui) -> None:
    key = _key("edit")
    assert ui.call(f"Counter/{key}/add", 1) == 1
    page.goto("/ui/state/Counter")
    row = page.locator(f"#state-keys tr[data-key='{key}']")
    expect(row.locator(".state-preview")).to_have_text("{count: 1}")
    row.locator("button.edit").click()
    expect(page.locator("#state-mode")).to_have_value("json")
    assert json.loads(page.locator("#state-text").input_value()) == {"count": 1}
    page.fill("#state-text", json.dumps({"count": 41, "note": "set from the UI"}))
    page.locator("dialog button[data-action=saved]").click()
    expect(row.locator(".state-preview")).to_contain_text("count: 41")
    rows = ui.sql(
        f"SELECT key, value_utf8 FROM state WHERE service_name = 'Counter' AND service_key = '{key}' "
        "ORDER BY key"
    )
    assert rows == [
        {"key": "count", "value_utf8": "41"},
        {"key": "note", "value_utf8": '"set from the UI"'},
    ]
    assert ui.call(f"Counter/{key}/add", 1) == 42


def test_binary_state_shows_and_edits_as_base64(page: Page, ui: Ui) -> None:
    key = _key("blob")
    blob = b"\xff\xfe" + os.urandom(10 * 1024)
    resp = httpx.post(
        f"{ui.admin}/services/Counter/state",
        json={"object_key": key, "new_state": {"blob": list(blob)}},
        timeout=30,
    )
    assert resp.status_code == 202, resp.text
    page.goto(f"/ui/virtual-objects/Counter/{key}")
    cell = page.locator("#state-entries tr[data-key=blob] .state-value")
    expect(cell).to_have_text("base64:" + base64.b64encode(blob).decode())
    expect(page.locator("#state-entries tr[data-key=blob]")).to_contain_text(f"{len(blob)} B")
    page.locator("#edit-state").click()
    expect(page.locator("#state-mode")).to_have_value("base64")
    new = bytes(range(256))
    page.fill("#state-text", json.dumps({"blob": base64.b64encode(new).decode()}))
    page.locator("dialog button[data-action=saved]").click()
    expect(cell).to_have_text("base64:" + base64.b64encode(new).decode())
    value = ui.sql(f"SELECT value FROM state WHERE service_name = 'Counter' AND service_key = '{key}'")
    assert value == [{"value": new.hex()}]


def test_workflow_page_shows_its_promise_pending_then_resolved(page: Page, ui: Ui) -> None:
    key = _key("alice")
    run = ui.send(f"Signup/{key}/run", f"{key}@example.com")
    wait_for("the run to wait on its promise", lambda: ui.status(run) in ("running", "suspended"))
    page.goto("/ui/workflows?service=Signup")
    page.locator(f"#keys tr[data-key='{key}'] a").first.click()
    expect(page.locator("#workflow-run")).to_contain_text(run)
    expect(page.locator("#promises tr[data-promise=approval] .promise-status")).to_contain_text("pending")
    expect(page.locator("#state-entries tr[data-key=status]")).to_contain_text("waiting for approval")
    resp = httpx.post(f"{ui.ingress}/Signup/{key}/approve", json="approved", timeout=30)
    assert resp.status_code == 200, resp.text
    wait_for("the run to complete", lambda: ui.status(run) == "completed")
    page.reload()
    expect(page.locator("#promises tr[data-promise=approval]")).to_contain_text("resolved")
    expect(page.locator("#promises tr[data-promise=approval]")).to_contain_text('"approved"')
    expect(page.locator("#workflow-run .badge")).to_have_attribute("data-status", "completed")
    expect(page.locator("#recent")).to_contain_text("approve")
