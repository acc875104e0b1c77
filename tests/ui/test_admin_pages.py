"""Deployments and services (register with dry run and force, revisions, drained, remove,
options), the SQL console, invoking a handler from its form, deep links and assets."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import httpx
from playwright.sync_api import Page, expect

from tests.compat.services.ledger import LABEL_ENV, LEDGER_ENV
from tests.support import PythonService
from tests.ui.conftest import Traffic, Ui, wait_for


def _versioned(tmp_path: Path, label: str) -> PythonService:
    env = {LABEL_ENV: label, LEDGER_ENV: str(tmp_path / "ledger.txt")}
    return PythonService(
        "tests.compat.services.versioned", env=env, log_dir=tmp_path, name=f"versioned-{label}"
    )


def _register(page: Page, uri: str, *, dry_run: bool = False, force: bool = False) -> None:
    page.fill("#register-uri", uri)
    page.locator("#register-dry-run").set_checked(dry_run)
    page.locator("#register-force").set_checked(force)
    page.locator("#register button[type=submit]").click()


def test_register_dry_run_then_for_real_then_a_new_revision_drains_and_prunes(
    page: Page, ui: Ui, tmp_path: Path
) -> None:
    with _versioned(tmp_path, "v1") as v1, _versioned(tmp_path, "v2") as v2:
        page.goto("/ui/deployments?register=1")
        _register(page, v1.url, dry_run=True)
        expect(page.locator("#register-result")).to_contain_text("Dry run")
        expect(page.locator("#register-services")).to_contain_text("Versioned (Service) revision 1")
        assert httpx.get(f"{ui.admin}/services/Versioned").status_code == 404
        _register(page, v1.url)
        expect(page.locator("#register-result")).to_contain_text("Registered dp_")
        first = httpx.get(f"{ui.admin}/services/Versioned").json()["deployment_id"]
        expect(page.locator(f"#deployments tr[data-id='{first}'] .drained")).to_have_text("active")
        _register(page, v2.url, force=True)
        expect(page.locator("#register-services")).to_contain_text("Versioned (Service) revision 2")
        second = httpx.get(f"{ui.admin}/services/Versioned").json()["deployment_id"]
        assert second != first
        assert httpx.post(f"{ui.ingress}/Versioned/which", timeout=30).json() == "v2"
        expect(page.locator(f"#deployments tr[data-id='{first}']")).to_have_attribute("data-drained", "yes")
        page.goto("/ui/services/Versioned")
        expect(page.locator("tr[data-revision='2']")).to_contain_text("current")
        expect(page.locator("tr[data-revision='2']")).to_contain_text(second)
        expect(page.locator("tr[data-revision='1']")).to_contain_text(first)
        page.goto("/ui/deployments")
        page.locator("#prune").click()
        expect(page.locator("dialog")).to_contain_text(first)
        page.locator("dialog button[data-action=ok]").click()
        expect(page.locator(f"#deployments tr[data-id='{first}']")).to_have_count(0)
        ids = {d["id"] for d in httpx.get(f"{ui.admin}/deployments").json()["deployments"]}
        assert first not in ids and second in ids
        page.locator(f"#deployments tr[data-id='{second}'] button.remove").click()
        page.locator("dialog button[data-action=ok]").click()
        expect(page.locator(f"#deployments tr[data-id='{second}']")).to_have_count(0)
        wait_for("the removal", lambda: httpx.get(f"{ui.admin}/services/Versioned").status_code == 404)


def test_service_options_edit_shows_in_the_admin_api(page: Page, ui: Ui) -> None:
    page.goto("/ui/services/Greeter")
    page.fill("#service-options input[name=idempotency_retention]", "2h")
    page.fill("#service-options input[name=journal_retention]", "3h")
    page.locator("#service-options button[type=submit]").click()
    expect(page.locator("#service-options input[name=idempotency_retention]")).to_have_value("2h")
    svc = httpx.get(f"{ui.admin}/services/Greeter").json()
    assert (svc["idempotency_retention"], svc["journal_retention"]) == ("2h", "3h")
    expect(page.locator("tr[data-handler=greet]")).to_contain_text("JSON string")


def test_invoke_a_handler_from_its_form(page: Page, ui: Ui) -> None:
    page.goto("/ui/services/Greeter#invoke")
    page.fill("#invoke-fields input[data-field=value]", "form")
    page.locator("#invoke button[type=submit]").click()
    expect(page.locator("#invoke-output")).to_have_text('"Hello, form!"')
    link = page.locator("#invoke-result a")
    inv = link.inner_text()
    assert ui.status(inv) == "completed"
    link.click()
    expect(page.locator("#journal")).to_contain_text('input("form")')
    page.goto("/ui/services/Counter?key=formkey#invoke")
    page.locator("#invoke-handler").select_option("add")
    page.fill("#invoke-fields input[data-field=value]", "5")
    page.locator("#invoke-mode").select_option("send")
    page.locator("#invoke button[type=submit]").click()
    expect(page.locator("#invoke-result")).to_contain_text("HTTP 202")
    sent = page.locator("#invoke-result a").inner_text()
    wait_for("the send to run", lambda: ui.status(sent) == "completed")
    assert ui.call("Counter/formkey/get", None) == 5


def test_sql_console_links_ids_keeps_history_and_downloads(page: Page, ui: Ui, traffic: Traffic) -> None:
    ui.call("Greeter/greet", "sql")
    q = "SELECT id, target, status FROM sys_invocation WHERE target_service_name = 'Greeter' ORDER BY id"
    want = ui.sql(q)
    page.goto("/ui/introspection")
    page.fill("#sql-input", q)
    page.press("#sql-input", "Control+Enter")
    expect(page.locator("#sql-meta")).to_contain_text(f"{len(want)} rows")
    expect(page.locator("#sql-table tbody tr")).to_have_count(len(want))
    with page.expect_download() as dl:
        page.locator("#download-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text())))
    assert rows == want
    with page.expect_download() as dl:
        page.locator("#download-json").click()
    assert json.loads(Path(dl.value.path()).read_text()) == want
    page.reload()
    expect(page.locator("#sql-history li").first).to_have_text(q)
    page.fill("#sql-input", "SELECT nope FROM nowhere")
    page.locator("#sql-run").click()
    expect(page.locator("#sql-results .error-box")).to_contain_text("SQL error")
    traffic.expect_error_status(400)
    page.locator("#sql-history li", has_text=q).click()
    page.locator("#sql-run").click()
    first = want[0]["id"]
    page.locator(f"#sql-table a[href='/ui/invocations/{first}']").click()
    expect(page.locator("#invocation-id")).to_have_text(first)


def test_deep_links_serve_the_app_and_assets_are_packaged(page: Page, ui: Ui) -> None:
    for path in ("/ui", "/ui/invocations?status=running", "/ui/state/Counter", "/ui/introspection"):
        resp = httpx.get(f"{ui.admin}{path}", follow_redirects=True)
        assert resp.status_code == 200 and '<script type="module" src="/ui/assets/app.js">' in resp.text
    asset = httpx.get(f"{ui.admin}/ui/assets/app.js")
    assert asset.headers["content-type"].startswith("text/javascript")
    assert (
        httpx.get(
            f"{ui.admin}/ui/assets/app.js", headers={"if-none-match": asset.headers["etag"]}
        ).status_code
        == 304
    )
    assert httpx.get(f"{ui.admin}/ui/assets/nope.js").status_code == 404
    assert httpx.get(f"{ui.admin}/ui/api/nope").status_code == 404
    page.goto("/ui/virtual-objects/Counter/deep")
    expect(page.locator("h1")).to_have_text("Counter / deep")
    expect(page.locator("#nav a.active")).to_have_text("Virtual objects")
    page.locator("#nav a[data-nav=overview]").click()
    expect(page).to_have_url(re.compile(r"/ui/$"))
    expect(page.locator("h1")).to_have_text("Overview")
