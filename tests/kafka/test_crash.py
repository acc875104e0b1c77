"""Perdure SIGKILLed again and again while records are produced: every key's total ends exact, each
record was applied once and in offset order, and the broker ends with every offset committed."""

from __future__ import annotations

import os
import threading

import httpx
import pytest

from tests.kafka.support import Sinks
from tests.support.kafka import wait_until

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
KILLS = int(os.environ.get("KAFKA_KILLS", "3"))
RECORDS = 240
KEYS = 6
CHUNK = 10


def _total(sinks: Sinks, keys: list[str]) -> int:
    try:
        return sum(sinks.counter(k)["count"] for k in keys)
    except (httpx.HTTPError, AssertionError):
        return -1  # the server is down or starting


def test_sigkill_while_producing_leaves_every_total_exact(perdure_sinks: Sinks) -> None:
    sinks = perdure_sinks
    topic = sinks.topic(3)
    keys = [f"kill{i}-{topic}" for i in range(KEYS)]
    sub = sinks.subscribe(topic, "service://KCounter/add")
    produced = threading.Event()

    def produce() -> None:
        for start in range(0, RECORDS, CHUNK):
            chunk = [(keys[i % KEYS].encode(), b"1") for i in range(start, start + CHUNK)]
            sinks.broker.produce(topic, chunk)
        produced.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    for n in range(KILLS):
        floor = (n + 1) * RECORDS // (KILLS + 2)
        wait_until(
            lambda f=floor: _total(sinks, keys) >= f, 120, f"{floor} records ingested before kill {n + 1}"
        )
        sinks.server.kill()
        sinks.server.start()
    producer.join(timeout=120)
    assert produced.is_set()
    sinks.wait_counts({k: RECORDS // KEYS for k in keys}, timeout_s=120)
    for key in keys:
        seen = sinks.counter(key)["seen"]
        assert seen == sorted(seen) and len(set(seen)) == len(seen) == RECORDS // KEYS, (key, seen)
    ends = sinks.broker.end_offsets(topic, 3)
    last: list[dict[int, int]] = []

    def committed_all() -> bool:
        last.append(sinks.broker.committed(sub["options"]["group.id"], topic, 3))
        return last[-1] == ends

    try:
        wait_until(committed_all, 60, "the group to commit every offset")
    except AssertionError:
        raise AssertionError(f"committed {last[-1]}, records end at {ends}") from None
