"""Regenerate the UI screenshots in docs/ (`python -m tests.ui.screenshots`): the overview, an
invocation page of a retrying invocation, and a state page, from a fresh Perdure running the
official-SDK services of `tests.ui.services`."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

from tests.compat.services.ledger import GATE_DIR_ENV
from tests.support import PerdureServer, PythonService, query, register
from tests.support.paths import REPO_ROOT
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

DOCS = REPO_ROOT / "docs"
VIEWPORT = {"width": 1200, "height": 760}


def _populate(ingress: str) -> str:
    for name in ("Ann", "Bob", "Chloe"):
        httpx.post(f"{ingress}/Greeter/greet", json=name, timeout=30)
        httpx.post(f"{ingress}/Caller/chain", json=name.lower(), timeout=30)
    for key, n in (("alice", 3), ("bob", 41), ("carol", 7)):
        httpx.post(f"{ingress}/Counter/{key}/add", json=n, timeout=30)
    httpx.post(f"{ingress}/Signup/dana/run/send", json="dana@example.com", timeout=30)
    for ms in (600_000, 900_000):
        httpx.post(f"{ingress}/Sleeper/nap/send", json=ms, timeout=30)
    retrying: str = httpx.post(f"{ingress}/Flaky/charge/send", json="order-1842", timeout=30).json()[
        "invocationId"
    ]
    return retrying


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="perdure-ui-shots-"))
    (base / "gates").mkdir()
    env = {GATE_DIR_ENV: str(base / "gates")}
    with (
        PerdureServer(base / "data") as srv,
        PythonService("tests.ui.services", env=env, log_dir=base, name="ui") as svc,
    ):
        register(srv.admin_url, svc.url)
        retrying = _populate(srv.ingress_url)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sql = f"SELECT status, retry_count FROM sys_invocation WHERE id = '{retrying}'"
            row = query(srv.admin_url, sql)
            if row and row[0]["status"] == "backing-off" and int(row[0].get("retry_count", 0)) >= 2:
                break
            time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, base_url=srv.admin_url)
            for path, ready, name in (
                ("/ui/", "#services-table table", "ui-overview.png"),
                (f"/ui/invocations/{retrying}", "#journal .jrow", "ui-invocation-retrying.png"),
                ("/ui/state/Counter", "#state-keys", "ui-state.png"),
            ):
                page.goto(path)
                page.wait_for_selector(ready)
                page.wait_for_timeout(300)
                page.screenshot(path=str(DOCS / name))
                print(DOCS / name)
            browser.close()


if __name__ == "__main__":
    main()
