"""Which Kafka client Perdure's consumers use, by measurement: confluent-kafka (librdkafka, as Restate)
against aiokafka, consuming the same preloaded 3-partition topic on a Tansu broker. Reports records per
second once the first record arrived (group join excluded) and the process CPU per record.
Run: `python -m bench.kafka_clients [--n 30000]`."""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

from tests.support.kafka import FAST_GROUP_OPTIONS, TansuBroker

BATCH = 500


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)  # every thread of this process (librdkafka's too)
    return r.ru_utime + r.ru_stime


def confluent(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    from confluent_kafka import Consumer

    conf = {"bootstrap.servers": bootstrap, "group.id": "bench-confluent", "auto.offset.reset": "earliest"}
    c = Consumer({**conf, **FAST_GROUP_OPTIONS, "enable.auto.offset.store": False})
    c.subscribe([topic])
    got, t0, cpu0 = 0, 0.0, 0.0
    while got < n:
        for msg in c.consume(BATCH, 1.0):
            if msg.error() is None:
                if got == 0:
                    t0, cpu0 = time.perf_counter(), _cpu_s()
                got += 1
    rate, cpu = n / (time.perf_counter() - t0), (_cpu_s() - cpu0) * 1e6 / n
    c.close()
    return rate, cpu


async def aiokafka(bootstrap: str, topic: str, n: int) -> tuple[float, float]:
    from aiokafka import AIOKafkaConsumer

    c = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="bench-aiokafka",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
    )
    await c.start()
    got, t0, cpu0 = 0, 0.0, 0.0
    try:
        while got < n:
            for records in (await c.getmany(timeout_ms=1000, max_records=BATCH)).values():
                if got == 0 and records:
                    t0, cpu0 = time.perf_counter(), _cpu_s()
                got += len(records)
        return n / (time.perf_counter() - t0), (_cpu_s() - cpu0) * 1e6 / n
    finally:
        await c.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=30_000, help="records in the topic")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="perdure-kafka-clients-") as tmp,
        TansuBroker(Path(tmp)) as broker,
    ):
        broker.create_topic("bench", 3)
        broker.produce("bench", [(f"k{i % 10}".encode(), str(i).encode()) for i in range(args.n)])
        for name, (rate, cpu_us) in (
            ("confluent-kafka", confluent(broker.bootstrap, "bench", args.n)),
            ("aiokafka", asyncio.run(aiokafka(broker.bootstrap, "bench", args.n))),
        ):
            print(f"{name:16} {rate:10.0f} records/s  {cpu_us:6.2f} us CPU/record")
    return 0


if __name__ == "__main__":
    sys.exit(main())
