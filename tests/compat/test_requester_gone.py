"""A caller that goes away before its answer (the client closes the connection) loses nothing:
the invocation runs to its end, the same idempotency key attaches to it afterwards and gets its
result, and the ingress goes on answering. Against each selected server (official Python SDK,
`Sleeper.until` of tests/reliability/services/waiting.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.compat.workspace import Workspace, new_tag
from tests.support import PythonService, Server, register

SLEEP_S = 1.5
GONE_AFTER_S = 0.3  # the client's read timeout: it closes the connection then
ANSWER_S_MAX = 60.0


@pytest.fixture(scope="module")
def sleeper(server: Server, workspace: Workspace) -> Iterator[PythonService]:
    with workspace.python_service("app", "waiting", "tests.reliability.services.waiting") as svc:
        register(server.admin_url, svc.url)
        yield svc


@pytest.mark.parametrize("gone_after_s", [0.01, GONE_AFTER_S])
def test_a_call_whose_client_went_away_completes_and_attaches(
    server: Server, sleeper: PythonService, gone_after_s: float
) -> None:
    key = new_tag()
    wake_at = time.time() + SLEEP_S
    url = f"{server.ingress_url}/Sleeper/until"
    with pytest.raises(httpx.TimeoutException):
        httpx.post(url, json=wake_at, headers={"idempotency-key": key}, timeout=gone_after_s)
    # The same key again (another body: an idempotent call answers with the first one's result).
    again = httpx.post(url, json=0.0, headers={"idempotency-key": key}, timeout=ANSWER_S_MAX)
    assert again.status_code == 200, again.text
    assert again.json() == pytest.approx(wake_at)
    fresh = httpx.post(url, json=0.0, timeout=ANSWER_S_MAX)
    assert fresh.status_code == 200 and fresh.json() == 0.0, fresh.text
