"""The web UI on a server with an admin token (and a different ingress token): the page loads
without a token, asks for it on the first 401, keeps it in localStorage and sends it as a bearer
token on every API request; the invoke form reaches the ingress with the ingress token."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.compat.services.ledger import GATE_DIR_ENV
from tests.support import PythonService
from tests.support.servers import Server, make_server
from tests.ui.conftest import WAIT_S

ADMIN_TOKEN = "ui-admin-secret"
INGRESS_TOKEN = "ui-ingress-secret"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("ui-login")
    gates = base / "gates"
    gates.mkdir()
    env = {"PERDURE_ADMIN_TOKEN": ADMIN_TOKEN, "PERDURE_INGRESS_TOKEN": INGRESS_TOKEN}
    with (
        make_server("perdure", base / "data", env=env) as srv,
        PythonService(
            "tests.ui.services", env={GATE_DIR_ENV: str(gates)}, log_dir=base, name="ui-login"
        ) as svc,
    ):
        resp = httpx.post(
            f"{srv.admin_url}/deployments",
            json={"uri": svc.url},
            headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert resp.status_code in (200, 201), resp.text
        yield srv


@pytest.fixture
def guarded_page(browser: Browser, guarded: Server) -> Iterator[tuple[Page, list[str | None]]]:
    context = browser.new_context(base_url=guarded.admin_url)
    context.set_default_timeout(WAIT_S * 1000)
    api_auth: list[str | None] = []  # the authorization header of each API (non-asset) request

    def seen(request: object) -> None:
        url: str = request.url  # type: ignore[attr-defined]
        if not url.startswith(guarded.admin_url + "/ui"):
            api_auth.append(request.headers.get("authorization"))  # type: ignore[attr-defined]

    context.on("request", seen)
    page = context.new_page()
    yield page, api_auth
    context.close()


def test_ui_assets_load_without_a_token_but_its_api_does_not(guarded: Server) -> None:
    assert httpx.get(f"{guarded.admin_url}/ui/", timeout=10).status_code == 200
    assert httpx.get(f"{guarded.admin_url}/ui/app.js", timeout=10).status_code == 200
    assert (
        httpx.post(f"{guarded.admin_url}/ui/api/ingress/Greeter/greet", json="x", timeout=10).status_code
        == 401
    )
    assert httpx.get(f"{guarded.admin_url}/deployments", timeout=10).status_code == 401


def test_the_ui_asks_for_the_token_keeps_it_and_sends_it(guarded_page: tuple[Page, list[str | None]]) -> None:
    page, api_auth = guarded_page
    page.goto("/ui/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#admin-token", "wrong")
    page.locator("#login button[type=submit]").click()
    expect(page.locator("#login")).to_contain_text("token is wrong")
    page.fill("#admin-token", ADMIN_TOKEN)
    page.fill("#ingress-token", INGRESS_TOKEN)
    page.locator("#login button[type=submit]").click()
    expect(page.locator("#status-counts")).to_be_visible()
    assert page.evaluate("localStorage.getItem('perdure.adminToken')") == ADMIN_TOKEN
    assert f"Bearer {ADMIN_TOKEN}" in api_auth
    page.goto("/ui/services/Greeter#invoke")  # a new page load: the stored token still works
    page.fill("#invoke-fields input[data-field=value]", "token")
    page.locator("#invoke button[type=submit]").click()
    expect(page.locator("#invoke-output")).to_have_text('"Hello, token!"')
    assert api_auth[-1] == f"Bearer {ADMIN_TOKEN}"


def test_a_page_without_the_token_shows_the_login_not_an_error(
    guarded_page: tuple[Page, list[str | None]], tmp_path: Path
) -> None:
    page, _ = guarded_page
    page.goto("/ui/deployments")
    expect(page.locator("#login")).to_contain_text("requires a token")
