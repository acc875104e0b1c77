"""A librdkafka consumer (confluent-kafka) driven from asyncio: every call runs on the consumer's own
thread, so the event loop never blocks and librdkafka sees one caller. Offsets are *stored* only by
`store()` (after the records are durable) and committed by librdkafka's auto-commit and on close, as
Restate configures it (`enable.auto.offset.store=false`, `enable.auto.commit=true`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from perdure.server.kafka.record import KafkaRecord

if TYPE_CHECKING:  # librdkafka is loaded with the first consumer, not with the server
    from confluent_kafka import Consumer, Message, TopicPartition

T = TypeVar("T")
log = logging.getLogger("perdure.kafka")
POLL_TIMEOUT_S = 0.5  # how long one poll waits for records (also how fast a stop is noticed)
CLOSE_TIMEOUT_S = 10.0
LAG_COMMITTED_TIMEOUT_S = 5.0


class ConsumerFailed(Exception):
    """The broker, topic or configuration failed the consumer; it restarts with backoff."""


def consumer_config(cluster: Mapping[str, str], options: Mapping[str, str]) -> dict[str, str]:
    """Restate's merge order: cluster properties, then subscription options (Perdure's own `perdure.*`
    options are not librdkafka's), then the two settings exactly-once ingestion relies on."""
    conf = {"https.ca.location": "probe", **cluster}
    conf.update({k: v for k, v in options.items() if not k.startswith("perdure.")})
    conf["enable.auto.commit"] = "true"
    conf["enable.auto.offset.store"] = "false"
    return conf


def _record(msg: Message) -> KafkaRecord:
    ts_type, ts = msg.timestamp()
    raw = msg.headers() or []
    pairs = list(raw.items()) if isinstance(raw, dict) else list(raw)
    return KafkaRecord(
        topic=msg.topic() or "",
        partition=msg.partition() or 0,
        offset=msg.offset() or 0,
        key=msg.key(),
        value=msg.value(),
        timestamp_ms=ts if ts_type != 0 and ts >= 0 else None,
        headers=[(str(k), v if isinstance(v, bytes | None) else str(v).encode()) for k, v in pairs],
    )


class KafkaConsumer:
    def __init__(self, config: Mapping[str, str], topic: str, name: str) -> None:
        self._config = dict(config)
        self._topic = topic
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"kafka-{name}")
        self._consumer: Consumer | None = None
        self.assigned: set[int] = set()
        self._committed: dict[int, int] = {}  # partition -> group's committed offset when assigned

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def open(self) -> None:
        await self._call(self._open)

    def _open(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        try:
            consumer = Consumer(self._config)
        except KafkaException as exc:
            raise ConsumerFailed(f"bad consumer configuration: {exc}") from None

        def on_assign(_: Consumer, parts: list[TopicPartition]) -> None:
            self.assigned.update(p.partition for p in parts)

        def on_revoke(_: Consumer, parts: list[TopicPartition]) -> None:
            self.assigned.difference_update(p.partition for p in parts)

        consumer.subscribe([self._topic], on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
        self._consumer = consumer

    async def poll(self, records_max: int) -> list[KafkaRecord]:
        return await self._call(self._poll, records_max)

    def _poll(self, records_max: int) -> list[KafkaRecord]:
        from confluent_kafka import KafkaError

        assert self._consumer is not None
        out = []
        for msg in self._consumer.consume(records_max, POLL_TIMEOUT_S):
            err = msg.error()
            if err is None:
                out.append(_record(msg))
            elif err.code() == KafkaError._PARTITION_EOF:
                continue
            elif err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART or err.fatal():
                # An absent topic (it may be created later) or a fatal error: the consumer restarts
                # with backoff; records taken before it in this poll are still handed over.
                if not out:
                    raise ConsumerFailed(f"{err.name()}: {err.str()}")
                break
            else:  # transient (broker down, timeouts): librdkafka reconnects by itself
                log.warning("kafka consumer on %s: %s", self._topic, err.str())
        return out

    async def store(self, next_offsets: Mapping[int, int]) -> None:
        """Mark partition -> next offset as safe to commit (its records are durable)."""
        await self._call(self._store, dict(next_offsets))

    def _store(self, next_offsets: dict[int, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        assert self._consumer is not None
        parts = [TopicPartition(self._topic, p, o) for p, o in next_offsets.items() if p in self.assigned]
        if parts:
            with contextlib.suppress(KafkaException):  # revoked meanwhile: the next owner re-reads, deduped
                self._consumer.store_offsets(offsets=parts)

    async def lag(self, durable: Mapping[int, int]) -> dict[int, tuple[int, int]]:
        """partition -> (position, high watermark) of the assigned partitions. The position is the
        next offset not yet durable: `durable` (what the runner stored), else the group's committed
        offset (asked once per partition); the high watermark is librdkafka's, from its fetches."""
        return await self._call(self._lag, dict(durable))

    def _lag(self, durable: dict[int, int]) -> dict[int, tuple[int, int]]:
        from confluent_kafka import OFFSET_INVALID, KafkaException, TopicPartition

        assert self._consumer is not None
        out: dict[int, tuple[int, int]] = {}
        with contextlib.suppress(KafkaException):
            unknown = [p for p in sorted(self.assigned) if p not in durable and p not in self._committed]
            if unknown:
                parts = [TopicPartition(self._topic, p) for p in unknown]
                for tp in self._consumer.committed(parts, timeout=LAG_COMMITTED_TIMEOUT_S):
                    self._committed[tp.partition] = tp.offset
            for p in sorted(self.assigned):
                lo, hi = self._consumer.get_watermark_offsets(TopicPartition(self._topic, p), cached=True)
                if hi < 0:
                    continue  # nothing fetched yet
                pos = durable.get(p, self._committed.get(p, OFFSET_INVALID))
                out[p] = (pos if pos >= 0 else max(lo, 0), hi)
        return out

    async def close(self) -> None:
        """Commit the stored offsets and leave the group."""
        try:
            await asyncio.wait_for(self._call(self._close), CLOSE_TIMEOUT_S)
        finally:
            self._pool.shutdown(wait=False)

    def _close(self) -> None:
        from confluent_kafka import KafkaException

        if self._consumer is None:
            return
        with contextlib.suppress(KafkaException):
            self._consumer.commit(asynchronous=False)
        with contextlib.suppress(KafkaException, RuntimeError):
            self._consumer.close()
        self._consumer = None
