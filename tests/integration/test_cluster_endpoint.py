"""`GET /cluster` on a running server: on PostgreSQL the node owns all 64 partitions with live
leases that it keeps renewing; on SQLite it reports the embedded store and one node."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import Server, make_server
from tests.support.postgres import postgres_available

DEADLINE_S = 60.0


@pytest.fixture(params=["perdure-pg", "perdure"] if postgres_available() else ["perdure"])
def perdure(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    with make_server(str(request.param), tmp_path / "data") as srv:
        yield srv


def _cluster(server: Server) -> dict[str, object]:
    resp = httpx.get(f"{server.admin_url}/cluster", timeout=10)
    assert resp.status_code == 200, resp.text
    body: dict[str, object] = resp.json()
    return body


def test_cluster_shows_the_owner_epoch_and_lease_of_every_partition(perdure: Server) -> None:
    body = _cluster(perdure)
    if perdure.kind == "perdure":
        assert body["store"] == "sqlite" and body["partitions"] == []
        return
    assert body["store"] == "postgresql" and body["partitions_total"] == 64
    parts = body["partitions"]
    assert isinstance(parts, list) and [p["partition"] for p in parts] == list(range(64))
    owner = body["node"]
    assert body["nodes"] == [{"name": owner, "partitions": 64}]
    assert all(p["owner"] == owner and p["epoch"] == 1 and p["lease_expires_in_s"] > 0 for p in parts)
    # Leases are renewed: after the first lease lifetime (6 s) has passed they are still live.
    first = max(p["lease_expires_in_s"] for p in parts)
    started = time.monotonic()
    while time.monotonic() - started < first + 1:
        time.sleep(0.2)
        assert time.monotonic() - started < DEADLINE_S
    again = _cluster(perdure)["partitions"]
    assert isinstance(again, list) and all(p["lease_expires_in_s"] > 0 and p["epoch"] == 1 for p in again)
