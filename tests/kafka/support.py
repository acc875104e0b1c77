"""Helpers of the Kafka suites: subscribe, read a counter, wait for totals."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from tests.compat.services.ledger import Ledger
from tests.support import PythonService, Server
from tests.support.kafka import FAST_GROUP_OPTIONS, TansuBroker, wait_until

DELIVERY_TIMEOUT_S = 90.0


@dataclass
class Sinks:
    server: Server
    broker: TansuBroker
    ledger: Ledger
    service: PythonService

    def topic(self, partitions: int = 3) -> str:
        name = f"t-{uuid.uuid4().hex[:10]}"
        self.broker.create_topic(name, partitions)
        return name

    def subscribe(self, topic: str, sink: str, **options: str) -> dict[str, Any]:
        opts = {"auto.offset.reset": "earliest", **FAST_GROUP_OPTIONS, **options}
        resp = httpx.post(
            f"{self.server.admin_url}/subscriptions",
            json={"source": f"kafka://local/{topic}", "sink": sink, "options": opts},
            timeout=30,
        )
        assert resp.status_code == 201, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def unsubscribe(self, sub_id: str) -> None:
        resp = httpx.delete(f"{self.server.admin_url}/subscriptions/{sub_id}", timeout=30)
        assert resp.status_code == 202, resp.text

    def server_subscriptions(self, source: str) -> list[dict[str, Any]]:
        resp = httpx.get(f"{self.server.admin_url}/subscriptions", params={"source": source}, timeout=30)
        assert resp.status_code == 200, resp.text
        subs: list[dict[str, Any]] = resp.json()["subscriptions"]
        return subs

    def probe(self) -> None:
        """Proves the server still ingests: a record on a fresh topic reaches its counter. A record
        that was going to be delivered elsewhere (same server, same broker) would have been by then."""
        topic = self.topic(1)
        key = f"probe-{topic}"
        sub = self.subscribe(topic, "service://KCounter/add")
        self.broker.produce(topic, [(key.encode(), b"1")])
        self.wait_counts({key: 1})
        self.unsubscribe(sub["id"])

    def counter(self, key: str) -> dict[str, Any]:
        resp = httpx.post(f"{self.server.ingress_url}/KCounter/{key}/get", timeout=30)
        assert resp.status_code == 200, resp.text
        out: dict[str, Any] = resp.json()
        return out

    def wait_counts(self, expected: dict[str, int], timeout_s: float = DELIVERY_TIMEOUT_S) -> None:
        def reached() -> bool:
            return all(self.counter(k)["count"] >= n for k, n in expected.items())

        wait_until(reached, timeout_s, f"counters to reach {expected}")
        got = {k: self.counter(k)["count"] for k in expected}
        assert got == expected
