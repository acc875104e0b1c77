"""Web UI load times with a large store: the invocation list with 100,000 stored invocations
and the invocation page of a 20,000-entry journal, in Debian's chromium through Playwright.

    .venv/bin/python -m bench.ui_load                       # 100,000 invocations, 20,000 entries
    .venv/bin/python -m bench.ui_load --invocations 10000 --entries 2000 --repeat 3

A fresh Perdure and the official-SDK services of `tests.ui.services` are started; the store is
filled through the ingress (real invocations of Greeter/greet, one Journal/long with N/2 runs),
then each page is opened `--repeat` times in a fresh browser context and timed from navigation
until its content is on screen (list: the first page of rows and the status counts; invocation
page: the first journal rows, then every entry loaded). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from tests.compat.services.ledger import GATE_DIR_ENV
from tests.support import PerdureServer, PythonService, query, register
from tests.support.paths import REPO_ROOT
from tests.ui.conftest import CHROMIUM, CHROMIUM_ARGS

LOAD_TIMEOUT_S = 3600.0
PAGE_TIMEOUT_MS = 120_000


def _fill(server: PerdureServer, n: int, concurrency: int) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.load", "--port", str(server.ingress_port), "--n", str(n)]
    argv += ["--concurrency", str(concurrency), "--warmup", "0"]
    proc = subprocess.run(
        argv, input="\n", capture_output=True, text=True, cwd=REPO_ROOT, timeout=LOAD_TIMEOUT_S, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _timed(page: Page, url: str, ready: str) -> float:
    t0 = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(ready, timeout=PAGE_TIMEOUT_MS)
    return time.perf_counter() - t0


def _stats(samples: list[float]) -> dict[str, float]:
    return {
        "median_s": round(statistics.median(samples), 3),
        "max_s": round(max(samples), 3),
        "min_s": round(min(samples), 3),
    }


def _measure(admin: str, journal_id: str, entries: int, repeat: int) -> dict[str, Any]:
    out: dict[str, list[float]] = {}
    heap: list[float] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for _ in range(repeat):
            ctx = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=admin)
            page = ctx.new_page()
            out.setdefault("overview", []).append(_timed(page, "/ui/", "#status-counts .card"))
            out.setdefault("invocation_list", []).append(
                _timed(page, "/ui/invocations", "#match-count")  # drawn with the rows, after both queries
            )
            t0 = time.perf_counter()
            first = page.locator("#invocations tbody tr").first.get_attribute("data-id")
            page.locator("[data-page=next]").click()
            page.wait_for_selector(f"#invocations tbody tr:not([data-id='{first}'])", timeout=PAGE_TIMEOUT_MS)
            page.wait_for_selector("#match-count", timeout=PAGE_TIMEOUT_MS)
            out.setdefault("invocation_list_next_page", []).append(time.perf_counter() - t0)
            out.setdefault("invocation_list_filtered", []).append(
                _timed(page, "/ui/invocations?service=Greeter&status=completed", "#match-count")
            )
            t0 = time.perf_counter()
            page.goto(f"/ui/invocations/{journal_id}")
            page.wait_for_selector("#journal .jrow", timeout=PAGE_TIMEOUT_MS)
            out.setdefault("journal_first_paint", []).append(time.perf_counter() - t0)
            page.wait_for_selector(f"#journal[data-loaded='{entries}']", timeout=PAGE_TIMEOUT_MS)
            out.setdefault("journal_all_entries", []).append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            page.evaluate("document.getElementById('journal').scrollTop = 1e9")
            page.wait_for_selector(f"#journal .jrow[data-index='{entries - 1}']", timeout=PAGE_TIMEOUT_MS)
            out.setdefault("journal_scroll_to_end", []).append(time.perf_counter() - t0)
            heap.append(page.evaluate("performance.memory ? performance.memory.usedJSHeapSize : 0") / 2**20)
            ctx.close()
        browser.close()
    result: dict[str, Any] = {k: _stats(v) for k, v in out.items()}
    result["journal_page_js_heap_mib"] = round(max(heap), 1)
    return result


def _journal_of(admin: str) -> str:
    rows = query(admin, "SELECT id FROM sys_invocation WHERE target_service_name = 'Journal' LIMIT 1")
    found: str = rows[0]["id"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invocations", type=int, default=100_000)
    parser.add_argument("--entries", type=int, default=20_000, help="journal entries of the big invocation")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--reuse", type=Path, help="measure again on the directory of an earlier run (no fill)"
    )
    args = parser.parse_args()
    base = args.reuse or Path(tempfile.mkdtemp(prefix="perdure-ui-bench-"))
    (base / "gates").mkdir(exist_ok=True)
    server = PerdureServer(base / "data")
    service = PythonService(
        "tests.ui.services", env={GATE_DIR_ENV: str(base / "gates")}, log_dir=base, name="ui"
    )
    with server, service:
        register(server.admin_url, service.url)
        t0 = time.monotonic()
        fill: dict[str, Any] = {} if args.reuse else _fill(server, args.invocations, args.concurrency)
        fill_s = time.monotonic() - t0
        t0 = time.monotonic()
        if args.reuse:
            journal_id = _journal_of(server.admin_url)
        else:  # n - 2 entries of runs, plus the input and the output
            resp = httpx.post(f"{server.ingress_url}/Journal/long/send", json=args.entries - 2, timeout=60)
            journal_id = resp.json()["invocationId"]
        deadline = time.monotonic() + LOAD_TIMEOUT_S
        while (
            query(server.admin_url, f"SELECT status FROM sys_invocation WHERE id = '{journal_id}'")[0][
                "status"
            ]
            != "completed"
        ):
            if time.monotonic() > deadline:
                raise SystemExit("the long journal never completed")
            time.sleep(1)
        journal_s = time.monotonic() - t0
        stored = query(server.admin_url, "SELECT count(*) AS n FROM sys_invocation")[0]["n"]
        size = query(server.admin_url, f"SELECT journal_size FROM sys_invocation WHERE id = '{journal_id}'")
        report = {
            "stored_invocations": stored,
            "journal_entries": size[0]["journal_size"],
            "fill_s": round(fill_s, 1),
            "fill_throughput_per_s": fill.get("throughput_per_s"),
            "journal_fill_s": round(journal_s, 1),
            "repeat": args.repeat,
            **_measure(server.admin_url, journal_id, args.entries, args.repeat),
        }
    print(json.dumps(report, indent=2))
    print(f"data kept in {base} (--reuse {base} measures again)", file=sys.stderr)


if __name__ == "__main__":
    main()
