"""Concurrency-limit rules and rate limits (issue 15).

The rules' API (`PUT /limits/rules`, `POST /limits/rules/bulk-delete`, `sys_rules`) and the
official CLI's `restate rules list|set|enable|disable|delete` answer the same on both servers.
Restate 1.7.12 only enforces rules behind its experimental vqueues flag, so enforcement is tested
on Perdure: a rule of concurrency 1 runs six concurrent calls one at a time (the ledger shows no
overlap), and a token bucket paces 600 sends at 100/s (PERDURE_RATE_SENDS, PERDURE_RATE_PER_S for the
long run: 10,000 at 50/s) within 10% of its rate, none lost, across a SIGKILL of the server.
Services: services/limited.py.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.compat.test_cli import restate
from tests.compat.workspace import Workspace, new_tag
from tests.support import Ingress, PythonService, Server, query, register

LIMITED_MODULE = "tests.compat.services.limited"
ADMIN_TIMEOUT_S = 10.0
STEPS = 6
RATE_SENDS = int(os.environ.get("PERDURE_RATE_SENDS", "600"))
RATE_PER_S = float(os.environ.get("PERDURE_RATE_PER_S", "100"))
RATE_BURST = max(10, int(RATE_PER_S // 2))  # catch-up room (0.5 s) when the loop is late on a loaded machine
RATE_TOLERANCE = 0.10
SENDS_IN_FLIGHT = 50


@pytest.fixture(scope="module")
def service(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "limited", LIMITED_MODULE) as svc:
        register(server.admin_url, svc.url)
        yield svc


@pytest.fixture
async def ingress(server: Server, service: PythonService) -> AsyncIterator[Ingress]:
    async with Ingress(server.ingress_url) as ing:
        yield ing


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("restate-cli-home")


def put_rules(server: Server, rules: list[dict[str, Any]]) -> httpx.Response:
    return httpx.put(f"{server.admin_url}/limits/rules", json=rules, timeout=ADMIN_TIMEOUT_S)


def delete_rules(server: Server, patterns: list[str]) -> httpx.Response:
    body = [{"pattern": p} for p in patterns]
    return httpx.post(f"{server.admin_url}/limits/rules/bulk-delete", json=body, timeout=ADMIN_TIMEOUT_S)


def cli(server: Server, home: Path, *args: str) -> tuple[int, str]:
    proc = restate(server, home, "rules", *args, "--yes")
    return proc.returncode, proc.stdout + proc.stderr


def test_rules_cli_sets_lists_disables_enables_and_deletes(server: Server, home: Path) -> None:
    pattern = "Limited/*"
    assert cli(server, home, "list") == (0, "No rules defined.\n")
    rc, out = cli(server, home, "set", pattern, "--concurrency", "3", "--description", "three")
    assert rc == 0 and re.search(rf"Created rule '{re.escape(pattern)}' \(version v\d+\)", out), out
    rc, out = cli(server, home, "list")
    assert rc == 0 and re.search(rf"{re.escape(pattern)}\s+3\s+no", out), out
    assert cli(server, home, "disable", pattern)[1].strip() == f"[OK]: Rule '{pattern}' disabled"
    assert re.search(rf"{re.escape(pattern)}\s+3\s+yes", cli(server, home, "list")[1])
    assert cli(server, home, "enable", pattern)[1].strip() == f"[OK]: Rule '{pattern}' enabled"
    rc, out = cli(server, home, "set", pattern, "--unlimited")
    assert rc == 0 and "Updated rule" in out, out
    assert re.search(rf"{re.escape(pattern)}\s+unlimited\s+no", cli(server, home, "list")[1])
    rows = query(
        server.admin_url,
        f"SELECT pattern, concurrency, description, disabled FROM sys_rules WHERE pattern = '{pattern}'",
    )
    assert rows == [{"pattern": pattern, "description": "three", "disabled": False}]
    rc, out = cli(server, home, "delete", pattern)
    assert rc == 0 and f"Deleted rule '{pattern}'" in out, out
    rc, out = cli(server, home, "delete", pattern)
    assert rc == 1 and f"No rule found with pattern '{pattern}'" in out, out
    assert cli(server, home, "list") == (0, "No rules defined.\n")


def test_rules_api_answers_as_restate(server: Server) -> None:
    strict = [{"pattern": "Api/x", "limits": {"concurrency": 2}, "precondition": {"type": "does_not_exist"}}]
    first = put_rules(server, strict)
    assert first.status_code == 200, first.text
    (rule,) = first.json()
    assert (rule["pattern"], rule["limits"], rule["disabled"]) == ("Api/x", {"concurrency": 2}, False)
    again = put_rules(server, strict)
    assert again.status_code == 409
    assert again.json()["message"] == (
        f"rule precondition DoesNotExist for pattern Api/x failed (actual version: Some(v{rule['version']}))"
    )
    stale = put_rules(server, [{"pattern": "Api/x", "precondition": {"type": "matches", "version": 999}}])
    assert stale.status_code == 409
    prefix = "Failed to deserialize the JSON body into the target type: "
    for body, reason in (
        ([{"pattern": "a/b/c/d"}], "[0].pattern: too many path components (max 3)"),
        ([{"pattern": ""}], "[0].pattern: pattern cannot be empty"),
        (
            [{"pattern": "x", "limits": {"concurrency": 0}}],
            "[0].limits.concurrency: invalid value: integer `0`",
        ),
        ([{"pattern": "a b"}], "[0].pattern: invalid component"),
        ([{"limits": {}}], "[0]: missing field `pattern`"),
    ):
        resp = put_rules(server, body)
        assert resp.status_code == 422 and resp.text.startswith(prefix + reason), resp.text
    gone = delete_rules(server, ["Api/x", "Api/never"])
    assert (gone.status_code, gone.json()) == (200, ["Api/x"])
    versioned = httpx.post(
        f"{server.admin_url}/limits/rules/bulk-delete",
        json=[{"pattern": "Api/never", "expected_version": 1}],
        timeout=ADMIN_TIMEOUT_S,
    )
    assert versioned.status_code == 409
    assert versioned.json()["message"].endswith("failed (actual version: None)")


@pytest.mark.parametrize("pattern", ["Limited/step", "Limited/*"])  # `Svc/*`: a count per handler
async def test_a_rule_of_concurrency_one_runs_concurrent_calls_one_at_a_time(
    server: Server, ingress: Ingress, workspace: Workspace, pattern: str
) -> None:
    if not server.kind.startswith("perdure"):
        pytest.skip("Restate 1.7.12 enforces rules only behind its experimental vqueues flag")
    assert put_rules(server, [{"pattern": pattern, "limits": {"concurrency": 1}}]).status_code == 200
    tag = new_tag()
    try:
        calls = [ingress.call("Limited/step", {"tag": tag, "n": n}) for n in range(STEPS)]
        async with asyncio.timeout(60):
            results = await asyncio.gather(*calls)
        assert sorted(r.json() for r in results) == list(range(STEPS))
    finally:
        delete_rules(server, [pattern])
    events = workspace.ledger.events(tag)
    assert len(events) == 2 * STEPS, events
    for enter, leave in zip(events[::2], events[1::2], strict=True):
        assert enter.startswith("enter ") and leave == "exit " + enter.split()[1], events


async def test_a_rate_limit_paces_starts_and_holds_across_a_sigkill(
    server: Server, ingress: Ingress, workspace: Workspace
) -> None:
    if server.kind != "perdure":
        # perdure-pg paces correctly but slower commits on a loaded machine starve the bucket
        # (measured 120/s of 200/s): PostgreSQL pacing is for bench/, not this CI test.
        pytest.skip("rate limits are Perdure's; the pacing test runs on the SQLite store")
    pattern, tag = "Limited/tick", new_tag()
    # Hold them back while they are sent, so the sender's speed does not shape the start rate.
    assert put_rules(server, [{"pattern": pattern, "limits": {"rate_per_s": 0.001}}]).status_code == 200
    await send_all(ingress, tag)
    limits = {"rate_per_s": RATE_PER_S, "burst": RATE_BURST}
    released = put_rules(server, [{"pattern": pattern, "limits": limits}])
    assert released.status_code == 200, released.text
    await wait_until(
        lambda: len(workspace.ledger.events(tag)) >= RATE_SENDS // 3,
        timeout_s=RATE_SENDS / 3 / RATE_PER_S * 4 + 60,  # PERDURE_RATE_* may ask for a long run
    )
    server.kill()
    server.restart()
    await wait_until(
        lambda: completed_ticks(server) == RATE_SENDS, timeout_s=RATE_SENDS / RATE_PER_S * 4 + 60
    )
    delete_rules(server, [pattern])
    ran = {int(e.split()[1]) for e in workspace.ledger.events(tag)}
    assert ran == set(range(RATE_SENDS)), "every send ran"
    starts = start_times_s(server)
    check_pace(starts[1:])  # the first one started under the holding rate


async def send_all(ingress: Ingress, tag: str) -> None:
    gate = asyncio.Semaphore(SENDS_IN_FLIGHT)

    async def one(n: int) -> None:
        async with gate:
            sent = await ingress.send("Limited/tick", {"tag": tag, "n": n}, idempotency_key=f"{tag}-{n}")
            assert sent.status_code in (200, 202), sent

    async with asyncio.TaskGroup() as tg:
        for n in range(RATE_SENDS):
            tg.create_task(one(n))


def completed_ticks(server: Server) -> int:
    rows = query(
        server.admin_url,
        "SELECT count(*) AS n FROM sys_invocation "
        "WHERE target_handler_name = 'tick' AND status = 'completed'",
    )
    return int(rows[0]["n"])


def start_times_s(server: Server) -> list[float]:
    rows = query(server.admin_url, "SELECT running_at FROM sys_invocation WHERE target_handler_name = 'tick'")
    return sorted(datetime.fromisoformat(r["running_at"].replace("Z", "+00:00")).timestamp() for r in rows)


def check_pace(starts: list[float]) -> None:
    """No second holds more starts than the rate (plus the bucket); each stretch of starts on
    either side of the kill, past its first burst, runs at the rate within the tolerance."""
    window_max, j = 0, 0
    for i, t in enumerate(starts):
        while starts[j] < t - 1.0:
            j += 1
        window_max = max(window_max, i - j + 1)
    assert window_max <= RATE_PER_S * (1 + RATE_TOLERANCE) + RATE_BURST, window_max
    gap_at = max(range(1, len(starts)), key=lambda i: starts[i] - starts[i - 1])
    for stretch in (starts[:gap_at], starts[gap_at:]):
        stretch = stretch[RATE_BURST:]  # a full bucket lets a burst go first (also after the restart)
        if len(stretch) < RATE_PER_S:
            continue  # too short to measure a rate
        rate = (len(stretch) - 1) / (stretch[-1] - stretch[0])
        assert abs(rate - RATE_PER_S) <= RATE_TOLERANCE * RATE_PER_S, (rate, len(stretch))


async def wait_until(predicate: Any, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.1)
