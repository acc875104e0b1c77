"""Records become invocations, on both servers (real Restate 1.7.12 and Perdure) against a Tansu
broker: a 3-partition topic into an official-SDK virtual object exactly once and in offset order per
key, with Restate's headers and nothing else; service and workflow sinks; a topic created after its
subscription; a deleted subscription delivers nothing more."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest

from tests.kafka.support import Sinks
from tests.support import query
from tests.support.kafka import wait_until

pytestmark = pytest.mark.kafka
RESTATE_HEADERS = {
    "kafka.offset",
    "kafka.topic",
    "kafka.partition",
    "kafka.timestamp",
    "restate.subscription.id",
    "kafka.key",
}


def _partitions_of(sinks: Sinks, topic: str) -> dict[str, int]:
    """Which partition each key's records went to, from the broker's own view (one record per key)."""
    from confluent_kafka import Consumer

    c = Consumer(
        {
            "bootstrap.servers": sinks.broker.bootstrap,
            "group.id": f"probe-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    c.subscribe([topic])
    out: dict[str, int] = {}
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and len(out) < 3:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None and msg.key() is not None:
                out.setdefault(msg.key().decode(), msg.partition() or 0)
    finally:
        c.close()
    return out


def test_object_sink_exactly_once_in_offset_order_with_headers(sinks: Sinks) -> None:
    topic = sinks.topic(3)
    sub = sinks.subscribe(topic, "service://KCounter/add")
    keys = [f"o{i}-{topic}" for i in range(3)]
    records = [(keys[i % 3].encode(), str(i + 1).encode(), [("producer-header", b"v")]) for i in range(30)]
    sinks.broker.produce(topic, records)
    expected = {k: sum(i + 1 for i in range(30) if i % 3 == n) for n, k in enumerate(keys)}
    sinks.wait_counts(expected)
    for key in keys:
        seen = sinks.counter(key)["seen"]
        assert len(seen) == 10 and seen == sorted(seen) and len(set(seen)) == 10, seen
    headers = [json.loads(line) for line in sinks.ledger.events(f"headers-{keys[0]}")]
    assert len(headers) == 10
    first = headers[0]
    assert {k for k in first if k.startswith(("kafka.", "restate.subscription"))} == RESTATE_HEADERS
    assert "producer-header" not in first
    assert first["kafka.topic"] == topic
    assert first["restate.subscription.id"] == sub["id"]
    assert base64.urlsafe_b64decode(first["kafka.key"]).decode() == keys[0]
    assert int(first["kafka.timestamp"]) > 1_700_000_000_000
    partition = {h["kafka.partition"] for h in headers}
    assert len(partition) == 1  # one key, one partition
    offsets = [int(h["kafka.offset"]) for h in headers]
    assert offsets == sorted(offsets)
    rows = query(
        sinks.server.admin_url,
        "SELECT invoked_by, invoked_by_subscription_id AS sub, count(*) AS n FROM sys_invocation "
        f"WHERE target_service_key = '{keys[0]}' AND target_handler_name = 'add' "
        "GROUP BY invoked_by, invoked_by_subscription_id",
    )
    assert rows == [{"invoked_by": "subscription", "sub": sub["id"], "n": 10}]
    sinks.unsubscribe(sub["id"])


def test_service_and_workflow_sinks(sinks: Sinks) -> None:
    topic = sinks.topic(3)
    tag = topic[-6:]
    sub_log = sinks.subscribe(topic, "service://KLog/note")
    sub_flow = sinks.subscribe(topic, "service://KFlow/run")
    values = [f'"{tag}-{i}"' for i in range(6)]
    sinks.broker.produce(topic, [(f"w{i}-{tag}".encode(), v.encode()) for i, v in enumerate(values)])

    def delivered() -> bool:
        logged = [e.split()[0] for e in sinks.ledger.events("klog")]
        flows = [e.split()[0] for e in sinks.ledger.events("kflow")]
        return (
            sum(x.startswith(tag) for x in logged) >= 6
            and sum(x.startswith("w") and x.endswith(tag) for x in flows) >= 6
        )

    wait_until(delivered, 90, "the service and workflow sinks to get every record")
    logged = sorted(e.split()[0] for e in sinks.ledger.events("klog") if e.startswith(tag))
    assert logged == sorted(json.loads(v) for v in values)
    flows = sorted(e for e in sinks.ledger.events("kflow") if e.split()[0].endswith(tag))
    assert flows == sorted(f"w{i}-{tag} {tag}-{i}" for i in range(6))
    for sub in (sub_log, sub_flow):
        sinks.unsubscribe(sub["id"])


def test_topic_created_after_the_subscription(sinks: Sinks) -> None:
    topic = f"late-{int(time.time() * 1000)}"
    sub = sinks.subscribe(topic, "service://KCounter/add")
    time.sleep(1.0)  # let the consumer meet the missing topic first (not an assertion on time)
    sinks.broker.create_topic(topic, 1)
    key = f"late-{topic}"
    sinks.broker.produce(topic, [(key.encode(), b"2") for _ in range(5)])
    sinks.wait_counts({key: 10}, timeout_s=120)
    sinks.unsubscribe(sub["id"])


def test_deleted_subscription_delivers_nothing_more(sinks: Sinks) -> None:
    topic = sinks.topic(1)
    key = f"del-{topic}"
    sub = sinks.subscribe(topic, "service://KCounter/add")
    sinks.broker.produce(topic, [(key.encode(), b"1") for _ in range(5)])
    sinks.wait_counts({key: 5})
    sinks.unsubscribe(sub["id"])
    sinks.broker.produce(topic, [(key.encode(), b"1") for _ in range(5)])
    sinks.probe()
    assert sinks.counter(key)["count"] == 5
    resp = httpx.get(f"{sinks.server.admin_url}/subscriptions", params={"source": f"kafka://local/{topic}"})
    assert resp.json() == {"subscriptions": []}


def test_a_key_that_is_not_utf8_stalls_its_partition_by_default(sinks: Sinks) -> None:
    """Restate's behaviour for a record that cannot become an object invocation: the consumer retries
    it forever, so the records after it in that partition wait (Perdure's opt-in policies aside)."""
    topic = sinks.topic(1)
    key = f"stall-{topic}"
    sub = sinks.subscribe(topic, "service://KCounter/add")
    sinks.broker.produce(topic, [(key.encode(), b"1"), (b"\xff\xfe", b"1"), (key.encode(), b"1")])
    sinks.wait_counts({key: 1})
    sinks.probe()
    assert sinks.counter(key)["count"] == 1
    sinks.unsubscribe(sub["id"])
