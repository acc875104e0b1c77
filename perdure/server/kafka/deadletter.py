"""Dead letters: records that cannot become invocations, produced to a dead-letter topic (the
subscription's `perdure.dead.letter.topic`, default `TOPIC.dlq`) with the reason and their origin in
headers, when the subscription chose `perdure.on.poison=dead-letter`. The runner flushes them before
it stores the offsets past them, so a crash can repeat a dead letter but never lose one."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from perdure.server.kafka.consumer import ConsumerFailed
from perdure.server.kafka.model import OPT_DEAD_LETTER_TOPIC, Subscription
from perdure.server.kafka.record import KafkaRecord

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

FLUSH_TIMEOUT_S = 30.0


class DeadLetters:
    def __init__(self, cluster: Mapping[str, str], sub: Subscription) -> None:
        self._conf = {**cluster, "acks": "all"}
        self._sub = sub
        self.topic = sub.options.get(OPT_DEAD_LETTER_TOPIC, f"{sub.topic}.dlq")
        self._producer: Producer | None = None
        self._pending = 0
        self._errors: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kafka-dlq-{sub.id}")

    def send(self, rec: KafkaRecord, reason: str) -> None:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer(self._conf)
        headers: list[tuple[str, str | bytes | None]] = [
            *rec.headers,
            ("perdure.error", reason.encode()),
            ("kafka.topic", rec.topic.encode()),
            ("kafka.partition", str(rec.partition).encode()),
            ("kafka.offset", str(rec.offset).encode()),
            ("restate.subscription.id", self._sub.id.encode()),
        ]

        def delivered(err: KafkaError | None, _: Message) -> None:
            if err is not None:
                self._errors.append(err.str())

        self._producer.produce(
            self.topic, value=rec.value, key=rec.key, headers=headers, on_delivery=delivered
        )
        self._pending += 1

    async def flush(self) -> None:
        """Wait until every dead letter sent so far is acknowledged by the broker."""
        if self._producer is None or not self._pending:
            return
        left = await asyncio.get_running_loop().run_in_executor(
            self._pool, self._producer.flush, FLUSH_TIMEOUT_S
        )
        errors, self._errors = self._errors, []
        self._pending = 0
        if left or errors:
            raise ConsumerFailed(f"dead-letter topic {self.topic}: {left} undelivered, errors {errors}")

    async def close(self) -> None:
        self._pool.shutdown(wait=False)
