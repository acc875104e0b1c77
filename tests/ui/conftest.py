"""Browser tests of the web UI: Debian's chromium driven by Playwright against a real Perdure
with the official-SDK services of `tests.ui.services`.

One server and one browser serve the whole directory (package scope: Playwright's sync API
runs an event loop in the main thread, which must be gone before the asyncio suites run).
Every page records each request it makes; a request to any other origin than the admin
API's is aborted and fails the test, as does any page error or console error."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Playwright,
    Request,
    Route,
    expect,
    sync_playwright,
)

from tests.compat.services.ledger import GATE_DIR_ENV
from tests.support import PythonService, Server, make_server, query, register

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
UI_SERVER_ENV = "PERDURE_UI_SERVER"  # "perdure" (SQLite, default) or "perdure-pg"
WAIT_S = 30.0  # generous: the machine may be loaded; nothing here measures speed
T = TypeVar("T")
expect.set_options(timeout=WAIT_S * 1000)


def wait_for(what: str, fn: Callable[[], T | None], timeout_s: float = WAIT_S) -> T:
    """Poll `fn` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@dataclass
class Ui:
    """The server under test, its ingress, gates for the services, and SQL."""

    server: Server
    gates: Path

    @property
    def admin(self) -> str:
        return self.server.admin_url

    @property
    def ingress(self) -> str:
        return self.server.ingress_url

    def sql(self, q: str) -> list[dict[str, Any]]:
        return query(self.admin, q)

    def send(self, path: str, body: Any, **headers: str) -> str:
        resp = httpx.post(f"{self.ingress}/{path}/send", json=body, headers=headers, timeout=30)
        assert resp.status_code == 202, resp.text
        invocation_id: str = resp.json()["invocationId"]
        return invocation_id

    def call(self, path: str, body: Any, **headers: str) -> Any:
        resp = httpx.post(f"{self.ingress}/{path}", json=body, headers=headers, timeout=30)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def status(self, invocation_id: str) -> str | None:
        rows = self.sql(f"SELECT status FROM sys_invocation WHERE id = '{invocation_id}'")
        return rows[0]["status"] if rows else None

    def row(self, invocation_id: str) -> dict[str, Any] | None:
        rows = self.sql(f"SELECT * FROM sys_invocation WHERE id = '{invocation_id}'")
        return rows[0] if rows else None

    def open_gate(self, tag: str) -> None:
        (self.gates / tag).touch()


@pytest.fixture(scope="package")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ui]:
    base = tmp_path_factory.mktemp("ui")
    gates = base / "gates"
    gates.mkdir()
    with (
        make_server(os.environ.get(UI_SERVER_ENV, "perdure"), base / "data") as srv,
        PythonService("tests.ui.services", env={GATE_DIR_ENV: str(gates)}, log_dir=base, name="ui") as svc,
    ):
        register(srv.admin_url, svc.url)
        yield Ui(srv, gates)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class Traffic:
    """Every URL a page requested, the foreign ones, and page/console errors."""

    urls: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def expect_error_status(self, status: int) -> None:
        """A test that provokes an error answer takes the browser's console line for it."""
        line = f"console: Failed to load resource: the server responded with a status of {status}"
        found = [e for e in self.errors if e.startswith(line)]
        assert found, f"no {status} answer seen: {self.errors}"
        self.errors.remove(found[0])


@pytest.fixture
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture
def page(browser: Browser, ui: Ui, traffic: Traffic) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=ui.admin)
    context.set_default_timeout(WAIT_S * 1000)

    def guard(route: Route, request: Request) -> None:
        traffic.urls.append(request.url)
        if request.url.startswith(ui.admin + "/") or request.url.startswith("blob:" + ui.admin):
            route.continue_()
        else:
            traffic.foreign.append(request.url)
            route.abort()

    def console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            traffic.errors.append(f"console: {msg.text}")

    context.route("**/*", guard)
    p = context.new_page()
    p.on("console", console)
    p.on("pageerror", lambda exc: traffic.errors.append(f"page error: {exc}"))
    yield p
    context.close()
    assert traffic.foreign == [], f"requests left the admin origin: {traffic.foreign}"
    assert traffic.errors == [], f"errors in the page: {traffic.errors}"
    assert traffic.urls, "the page made no request at all"
