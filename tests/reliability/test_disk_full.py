"""Disk full: the Perdure server's data directory sits on a small tmpfs that a filler file fills
up, so SQLite cannot write. New work must be refused with 503 (a Restate-style JSON error), the
acknowledged work must stay intact (counters equal the acknowledged increments, `PRAGMA
integrity_check` is ok), and the server must accept work again once space returns.

Needs root (to mount the tmpfs); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sqlite3
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.compat.services.ledger import GATE_DIR_ENV, LEDGER_ENV
from tests.support import PerdureServer, PythonService, register

DISK_BYTES = 24 * 1024 * 1024
FILL_CHUNK_BYTES = 64 * 1024
RECOVERY_WAIT_S = 20.0
DB_FILE = "perdure.sqlite3"
PRESS_INPUT_BYTES = 16 * 1024
PRESS_SENDS_MAX = 3000


@contextlib.contextmanager
def small_disk(mountpoint: Path) -> Iterator[Path]:
    """A tmpfs of DISK_BYTES at `mountpoint`, unmounted on exit (skips the test without root)."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


def fill(path: Path) -> int:
    """Write `path` until the filesystem says ENOSPC; return the bytes written."""
    written = 0
    chunk = b"\0" * FILL_CHUNK_BYTES
    with path.open("wb", buffering=0) as f:
        while True:
            try:
                written += f.write(chunk) or 0
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    # Squeeze out the last partial chunk too.
    with path.open("ab", buffering=0) as f, contextlib.suppress(OSError):
        while f.write(b"\0" * 512):
            written += 512
    return written


def integrity(db: Path) -> list[str]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


def add(http: httpx.Client, key: str, delta: int, idempotency_key: str | None = None) -> httpx.Response:
    headers = {"content-type": "application/json"}
    if idempotency_key:
        headers["idempotency-key"] = idempotency_key
    return http.post(f"/Counter/{key}/add", content=str(delta).encode(), headers=headers)


def press(http: httpx.Client) -> tuple[list[str], httpx.Response | None]:
    """Send Greeter invocations with large inputs until one is refused; return the accepted ids."""
    accepted: list[str] = []
    name = json.dumps("x" * PRESS_INPUT_BYTES).encode()
    for _ in range(PRESS_SENDS_MAX):
        resp = http.post("/Greeter/greet/send", content=name, headers={"content-type": "application/json"})
        if resp.status_code != 202:
            return accepted, resp
        accepted.append(resp.json()["invocationId"])
    return accepted, None


def test_full_disk_refuses_new_work_with_503_corrupts_nothing_and_recovers(tmp_path: Path) -> None:
    env = {LEDGER_ENV: str(tmp_path / "ledger.txt"), GATE_DIR_ENV: str(tmp_path)}
    with small_disk(tmp_path / "disk") as disk:
        server = PerdureServer(disk / "data")
        server.log_path = tmp_path / "perdure-server.log"  # off the full disk, so it can be read
        filler = disk / "filler"
        with (
            server,
            PythonService("tests.compat.services.core", "app", env=env, log_dir=tmp_path, name="core") as svc,
            httpx.Client(base_url=server.ingress_url, timeout=30) as http,
        ):
            register(server.admin_url, svc.url)
            key = uuid.uuid4().hex[:8]
            acknowledged = 0
            for _ in range(10):
                resp = add(http, key, 1)
                assert resp.status_code == 200, resp.text
                acknowledged += 1

            in_flight = [
                http.post("/Steps/sleepy/send", json={"tag": f"{key}-{i}", "sleep_ms": 1500})
                for i in range(5)
            ]
            assert all(r.status_code == 202 for r in in_flight), [r.text for r in in_flight]
            fill(filler)
            # The WAL reuses space it already holds, so writes go on for a while: press until the
            # store fails, then every new request must be refused.
            accepted, first_refusal = press(http)
            assert first_refusal is not None, f"{len(accepted)} sends accepted on a full disk, none refused"
            print(
                f"disk full: {len(accepted)} sends accepted, then",
                first_refusal.status_code,
                first_refusal.text,
            )
            refused = [add(http, key, 100, idempotency_key=f"full-{i}") for i in range(5)]
            greet = http.post("/Greeter/greet", json="Ann")
            statuses = [first_refusal.status_code] + [r.status_code for r in [*refused, greet]]
            acknowledged += 100 * sum(1 for r in refused if r.status_code == 200)
            assert all(s == 503 for s in statuses), (
                f"expected 503 while the disk is full, got {statuses}: {first_refusal.text}"
            )
            body = greet.json()
            assert body["code"] == 503 and body["message"], body
            assert server.running, "the server died on a full disk"
            assert http.get("/restate/health").status_code == 200

            filler.unlink()
            deadline = time.monotonic() + RECOVERY_WAIT_S
            while True:
                resp = add(http, key, 1000)
                if resp.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            print(f"recovered {RECOVERY_WAIT_S - (deadline - time.monotonic()):.1f}s after space returned")
            assert resp.status_code == 200, (
                f"no recovery after space returned: {resp.status_code} {resp.text}"
            )
            acknowledged += 1000
            count = http.post(f"/Counter/{key}/get")
            assert (count.status_code, count.json()) == (200, acknowledged), count.text
            sleepy = [r.json()["invocationId"] for r in in_flight]
            for invocation_id in sleepy + accepted[-20:]:  # acknowledged before or as the disk filled
                done = http.get(f"/restate/invocation/{invocation_id}/attach")
                assert done.status_code == 200, (invocation_id, done.text)
        # Killed by the context manager (SIGKILL): the store must reopen clean.
        assert integrity(disk / "data" / DB_FILE) == ["ok"]
