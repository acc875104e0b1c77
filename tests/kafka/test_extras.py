"""What Restate's users ask for and Restate 1.7 lacks, on Perdure: record headers passed on request,
poison records skipped or dead-lettered instead of stalling, consumer lag in SQL, pause and resume,
drain on delete, duplicate subscriptions refused, static clusters from the configuration."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.kafka.support import Sinks
from tests.support import query
from tests.support.kafka import TansuBroker, wait_until
from tests.support.servers import PerdureServer

pytestmark = pytest.mark.kafka
BAD_KEY = b"\xff\xfe"


def test_record_headers_reach_the_handler_when_asked_for(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    topic = sinks.topic(1)
    key = f"hdr-{topic}"
    sub = sinks.subscribe(topic, "service://KCounter/add", **{"perdure.record.headers": "true"})
    sinks.broker.produce(topic, [(key.encode(), b"1", [("trace", b"abc"), ("x-origin", b"billing")])])
    sinks.wait_counts({key: 1})
    headers = json.loads(sinks.ledger.events(f"headers-{key}")[0])
    assert headers["trace"] == "abc" and headers["x-origin"] == "billing"
    assert headers["kafka.offset"] == "0" and headers["restate.subscription.id"] == sub["id"]
    sinks.unsubscribe(sub["id"])


def test_poison_record_is_skipped_and_counted(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    topic = sinks.topic(1)
    key = f"skip-{topic}"
    sub = sinks.subscribe(topic, "service://KCounter/add", **{"perdure.on.poison": "skip"})
    sinks.broker.produce(topic, [(key.encode(), b"1"), (BAD_KEY, b"1"), (key.encode(), b"1")])
    sinks.wait_counts({key: 2})
    assert sinks.counter(key)["seen"] == [0, 2]
    sinks.unsubscribe(sub["id"])


def test_poison_records_go_to_the_dead_letter_topic(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    topic = sinks.topic(1)
    dlq = f"{topic}.dlq"
    sinks.broker.create_topic(dlq, 1)
    key = f"dlq-{topic}"
    sub = sinks.subscribe(
        topic,
        "service://KCounter/add",
        **{"perdure.on.poison": "dead-letter", "perdure.record.size.max.bytes": "16"},
    )
    big = b"1" + b" " * 40  # valid JSON, over the subscription's size limit
    sinks.broker.produce(topic, [(key.encode(), b"1"), (BAD_KEY, b"5", [("h", b"v")]), (key.encode(), big)])
    sinks.broker.produce(topic, [(key.encode(), b"1")])
    sinks.wait_counts({key: 2})
    letters = _read_all(sinks.broker, dlq, 2)
    assert [(k, v) for k, v, _ in letters] == [(BAD_KEY, b"5"), (key.encode(), big)]
    first = dict(letters[0][2])
    assert first["h"] == b"v" and first["kafka.offset"] == b"1" and first["kafka.topic"] == topic.encode()
    assert b"UTF-8" in first["perdure.error"]
    assert b"exceeds the limit of 16 bytes" in dict(letters[1][2])["perdure.error"]
    sinks.unsubscribe(sub["id"])


def _read_all(
    broker: TansuBroker, topic: str, n: int
) -> list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"read-{topic}"})
    c.assign([TopicPartition(topic, 0, 0)])
    out = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < n and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append((msg.key(), msg.value(), [(k, v) for k, v in msg.headers() or []]))
    finally:
        c.close()
    return out


def test_a_stalled_partition_shows_its_lag_in_sql(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    topic = sinks.topic(1)
    key = f"stall-{topic}"
    sub = sinks.subscribe(topic, "service://KCounter/add")
    sinks.broker.produce(topic, [(key.encode(), b"1"), (BAD_KEY, b"1"), (key.encode(), b"1")])
    sinks.wait_counts({key: 1})
    sql = f"SELECT * FROM perdure_subscription_lag WHERE subscription_id = '{sub['id']}'"

    def lag_shown() -> bool:
        rows = query(sinks.server.admin_url, sql)
        return rows == [
            {
                "subscription_id": sub["id"],
                "topic": topic,
                "partition": 0,
                "position": 1,
                "high_watermark": 3,
                "lag": 2,
            }
        ]

    wait_until(lag_shown, 60, "the stalled partition's lag in perdure_subscription_lag")
    assert sinks.counter(key)["count"] == 1
    sinks.unsubscribe(sub["id"])


def test_pause_and_resume(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    admin = sinks.server.admin_url
    topic = sinks.topic(1)
    key = f"pause-{topic}"
    sub = sinks.subscribe(topic, "service://KCounter/add")
    sinks.broker.produce(topic, [(key.encode(), b"1")])
    sinks.wait_counts({key: 1})
    paused = httpx.patch(f"{admin}/subscriptions/{sub['id']}/pause")
    assert paused.status_code == 200 and paused.json()["options"]["perdure.paused"] == "true"
    sinks.broker.produce(topic, [(key.encode(), b"1") for _ in range(3)])
    sinks.probe()
    assert sinks.counter(key)["count"] == 1
    resumed = httpx.patch(f"{admin}/subscriptions/{sub['id']}/resume")
    assert resumed.status_code == 200 and resumed.json()["options"]["perdure.paused"] == "false"
    sinks.wait_counts({key: 4})
    sinks.unsubscribe(sub["id"])


def test_delete_drains_so_a_successor_on_the_same_group_starts_after_it(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    topic = sinks.topic(3)
    keys = [f"drain{i}-{topic}" for i in range(3)]
    group = f"g-{topic}"
    sub = sinks.subscribe(topic, "service://KCounter/add", **{"group.id": group})
    sinks.broker.produce(topic, [(keys[i % 3].encode(), b"1") for i in range(30)])
    sinks.wait_counts(dict.fromkeys(keys, 10))
    sinks.unsubscribe(sub["id"])  # at once: auto-commit (every 5 s) may not have run yet
    ends = sinks.broker.end_offsets(topic, 3)
    wait_until(lambda: sinks.broker.committed(group, topic, 3) == ends, 30, f"the drain to commit {ends}")
    # A new subscription on the same group is a new dedup stream: it must start after the old one.
    sub2 = sinks.subscribe(topic, "service://KCounter/add", **{"group.id": group})
    sinks.broker.produce(topic, [(k.encode(), b"1") for k in keys])
    sinks.wait_counts(dict.fromkeys(keys, 11))
    sinks.unsubscribe(sub2["id"])


def test_duplicate_subscription_is_refused(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    topic = sinks.topic(1)
    sub = sinks.subscribe(topic, "service://KCounter/add")
    resp = httpx.post(
        f"{sinks.server.admin_url}/subscriptions",
        json={"source": f"kafka://local/{topic}", "sink": "service://KCounter/add"},
    )
    assert resp.status_code == 409
    assert resp.json() == {
        "message": f"a subscription from 'kafka://local/{topic}' to 'service://KCounter/add' already exists: "
        f"'{sub['id']}'",
        "restate_code": None,
    }
    sinks.unsubscribe(sub["id"])


def test_static_cluster_from_configuration(broker: TansuBroker, tmp_path: Path) -> None:
    srv = PerdureServer(tmp_path / "data")
    clusters = [{"name": "static", "brokers": [broker.bootstrap], "sasl.password": "pw", "client.id": "cfg"}]
    srv.env["PERDURE_KAFKA_CLUSTERS"] = json.dumps(clusters)
    with srv:
        got = httpx.get(f"{srv.admin_url}/kafka-clusters/static").json()
        assert got["properties"] == {
            "metadata.broker.list": broker.bootstrap,
            "sasl.password": "***",
            "client.id": "cfg",
        }
        assert got["created_at"] == "1970-01-01T00:00:00.000000000Z"
        assert "deprecated" in got["info"][0]["message"]
        resp = httpx.patch(
            f"{srv.admin_url}/kafka-clusters/static", json={"properties": {"bootstrap.servers": "x"}}
        )
        assert resp.status_code == 409
        resp = httpx.post(
            f"{srv.admin_url}/kafka-clusters",
            json={"name": "static", "properties": {"bootstrap.servers": broker.bootstrap}},
        )
        assert resp.status_code == 409
