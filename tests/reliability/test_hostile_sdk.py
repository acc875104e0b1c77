"""A misbehaving SDK (tests/reliability/services/rogue.py) must not hurt the server: each bad
answer fails the attempt with a clear `last_failure` and the invocation backs off and retries,
the server keeps serving, and invocations on a well-behaved deployment are not disturbed.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.compat.services.ledger import GATE_DIR_ENV, LEDGER_ENV
from tests.support import PythonService, Server, query, register
from tests.support.fixtures import running_server
from tests.support.servers import selected_servers

FAILURE_WAIT_S = 20.0
RSS_BYTES_MAX = 400 * 1024 * 1024

# What the last failure must mention for each misbehaviour (lower case, any one of the words).
EXPECTED_FAILURE_WORDS: dict[str, tuple[str, ...]] = {
    "unknown_type": ("unknown", "unexpected", "type", "0x7777"),
    "end_without_output": ("output", "end", "journal", "closed"),
    "notification_from_sdk": ("unexpected", "notification", "0x8011", "type"),
    "short_body": ("closed", "incomplete", "truncated", "eof", "end", "stream"),
    "huge_length": ("size", "large", "limit", "length"),
    "truncated_header": ("closed", "incomplete", "truncated", "eof", "end", "stream"),
    "garbage_protobuf": ("decode", "protobuf", "parse", "invalid", "message"),
    "no_messages": ("closed", "end", "stream", "without"),
    "status_500": ("500",),
    "status_404": ("404", "not found"),
    "status_400": ("400",),
    "wrong_content_type": ("content-type", "content type", "text/html"),
    "reset_mid_stream": ("reset", "stream", "closed", "error", "h2"),
}


@dataclass
class Rig:
    server: Server
    http: httpx.Client

    def failure_of(self, invocation_id: str) -> dict[str, Any]:
        """Wait until the invocation has a recorded failure (or completed) and return its row."""
        sql = (
            "SELECT status, retry_count, last_failure, last_failure_error_code FROM sys_invocation "
            f"WHERE id = '{invocation_id}'"
        )
        deadline = time.monotonic() + FAILURE_WAIT_S
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = query(self.server.admin_url, sql)
            if rows and (rows[0].get("last_failure") or rows[0].get("status") == "completed"):
                return rows[0]
            time.sleep(0.1)
        raise AssertionError(f"{invocation_id}: no failure recorded within {FAILURE_WAIT_S}s: {rows}")

    def retries(self, invocation_id: str, at_least: int) -> dict[str, Any]:
        deadline = time.monotonic() + FAILURE_WAIT_S
        row: dict[str, Any] = {}
        while time.monotonic() < deadline:
            row = self.failure_of(invocation_id)
            if int(row.get("retry_count", 0)) >= at_least or row.get("status") == "completed":
                return row
            time.sleep(0.1)
        raise AssertionError(f"{invocation_id}: fewer than {at_least} retries: {row}")

    def send(self, handler: str, body: Any = None) -> str:
        resp = self.http.post(f"/Rogue/{handler}/send", json=body)
        assert resp.status_code == 202, resp.text
        invocation_id = resp.json()["invocationId"]
        assert isinstance(invocation_id, str)
        return invocation_id

    def kill(self, invocation_id: str) -> None:
        resp = httpx.patch(f"{self.server.admin_url}/invocations/{invocation_id}/kill", timeout=10)
        assert resp.status_code in (200, 202, 409), resp.text

    def assert_healthy(self) -> None:
        assert self.server.running, "the server process died"
        assert self.http.get("/restate/health").status_code == 200
        resp = self.http.post("/Greeter/greet", json="Ann")
        assert (resp.status_code, resp.json()) == (200, "Hello, Ann!"), resp.text


# Perdure only: the real Restate 1.7.12 panics on some of these endpoints (for example an End
# with no Output: "There should be a journal entry at index 0") and then stops serving.
@pytest.fixture(scope="module", params=[k for k in selected_servers() if k == "perdure"])
def rig(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    root = tmp_path_factory.mktemp("hostile-sdk")
    env = {LEDGER_ENV: str(root / "ledger.txt"), GATE_DIR_ENV: str(root)}
    with (
        running_server(str(request.param), tmp_path_factory) as server,
        PythonService("tests.reliability.services.rogue", "app", log_dir=root, name="rogue") as rogue,
        PythonService("tests.compat.services.core", "app", env=env, log_dir=root, name="core") as core,
        # No keep-alive: a connection the server dropped meanwhile must not fail a test.
        httpx.Client(
            base_url=server.ingress_url, timeout=30, limits=httpx.Limits(max_keepalive_connections=0)
        ) as http,
    ):
        register(server.admin_url, rogue.url)
        register(server.admin_url, core.url)
        yield Rig(server, http)


@pytest.mark.parametrize("behaviour", sorted(EXPECTED_FAILURE_WORDS))
def test_misbehaving_endpoint_fails_the_attempt_with_a_clear_reason_and_is_retried(
    rig: Rig, behaviour: str
) -> None:
    invocation_id = rig.send(behaviour)
    row = rig.retries(invocation_id, at_least=2)
    try:
        assert row["status"] in ("backing-off", "running"), row
        failure = f"{row.get('last_failure_error_code', '')} {row.get('last_failure', '')}".lower()
        words = EXPECTED_FAILURE_WORDS[behaviour]
        assert any(w in failure for w in words), (
            f"{behaviour}: last_failure {failure!r} mentions none of {words}"
        )
        rig.assert_healthy()
    finally:
        rig.kill(invocation_id)


def test_messages_after_end_are_ignored_once_the_output_is_journaled(rig: Rig) -> None:
    # Restate 1.7.12 completes such an invocation with the Output sent before End.
    invocation_id = rig.send("message_after_end")
    row = rig.failure_of(invocation_id)
    assert row["status"] == "completed", row
    resp = rig.http.get(f"/restate/invocation/{invocation_id}/output")
    assert (resp.status_code, resp.json()) == (200, "x"), resp.text
    rig.assert_healthy()


def test_well_behaved_invocations_are_not_disturbed_by_misbehaving_ones(rig: Rig) -> None:
    rogues = [rig.send(behaviour) for behaviour in sorted(EXPECTED_FAILURE_WORDS)]
    try:
        started = time.monotonic()
        for i in range(20):
            resp = rig.http.post("/Greeter/greet", json=f"n{i}")
            assert (resp.status_code, resp.json()) == (200, f"Hello, n{i}!"), resp.text
        assert time.monotonic() - started < 10.0
        for invocation_id in rogues:
            row = rig.failure_of(invocation_id)
            assert row["status"] != "completed", row
    finally:
        for invocation_id in rogues:
            rig.kill(invocation_id)
    rig.assert_healthy()


# --- Hypothesis: arbitrary response streams --------------------------------------------------

KNOWN_TYPES = [0x0000, 0x0001, 0x0002, 0x0003, 0x0004, 0x0005, 0x0400, 0x0401, 0x040C, 0x0411, 0x8011, 0xFC01]


@st.composite
def frame_streams(draw: st.DrawFn) -> bytes:
    """Sequences of frames with known or unknown types, any flags, bodies and (mis)declared lengths."""
    out = b""
    for _ in range(draw(st.integers(0, 4))):
        msg_type = draw(st.sampled_from(KNOWN_TYPES) | st.integers(0, 0xFFFF))
        body = draw(st.binary(max_size=40))
        length = draw(st.sampled_from([len(body)]) | st.integers(0, 0xFFFFFFFF))
        flags = draw(st.sampled_from([0]) | st.integers(0, 0xFFFF))
        out += struct.pack(">HHI", msg_type, flags, length) + body
    if draw(st.booleans()):
        out = out[: draw(st.integers(0, len(out)))]
    return out


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=frame_streams())
def test_any_response_stream_ends_in_completion_or_a_recorded_failure(rig: Rig, stream: bytes) -> None:
    invocation_id = rig.send("fuzz", stream.hex())
    try:
        row = rig.failure_of(invocation_id)
        if row.get("status") != "completed":
            assert row["last_failure"], row
    finally:
        rig.kill(invocation_id)
    assert rig.server.running, "the server process died"
    assert rig.http.get("/restate/health").status_code == 200


def test_server_memory_stays_bounded_after_hostile_endpoints(rig: Rig) -> None:
    import psutil

    rss = psutil.Process(rig.server.pid).memory_info().rss
    assert rss < RSS_BYTES_MAX, f"server RSS {rss / 2**20:.0f} MiB"
    rig.assert_healthy()
