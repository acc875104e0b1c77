"""Kafka records in, invocations out, exactly once.

One `SubscriptionRunner` per active subscription, a long-lived task of the server's TaskGroup (the
`Ingestion` supervisor starts and stops them as the catalog changes). A runner polls a batch, submits
one `Ingest` command per record in offset order (the processor drops offsets at or below the stream's
high-water mark and writes the new mark in the same transaction as the invocation), waits until the
batch is durable, and only then stores the offsets for librdkafka to commit. A crash anywhere in
between re-reads records from the last commit, and the marks drop what was already ingested.

Failures (broker or topic unavailable, store unavailable, a poison record under the default `stall`
policy) close the consumer, committing what is durable, and restart it with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from perdure.server.kafka.catalog import KafkaCatalog
from perdure.server.kafka.consumer import ConsumerFailed, KafkaConsumer, consumer_config
from perdure.server.kafka.deadletter import DeadLetters
from perdure.server.kafka.model import OPT_ON_POISON, KafkaCluster, Subscription
from perdure.server.kafka.record import KafkaRecord, PoisonRecord, producer_key, to_request
from perdure.server.processor.commands import Ingest
from perdure.server.processor.effects import Reply
from perdure.server.query.catalog import SubscriptionLagRow
from perdure.server.registry import Registry
from perdure.server.runtime import Runtime, Unavailable

log = logging.getLogger("perdure.kafka")

BACKOFF_S_INITIAL = 0.2
DRAIN_TIMEOUT_S = 30.0


@dataclass(slots=True)
class SubscriptionStats:
    """What a runner reports: partition -> (durable position, high watermark), and counters."""

    partitions: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    durable: dict[int, int] = field(default_factory=dict)  # partition -> next offset not yet durable
    ingested: int = 0
    skipped: int = 0
    dead_lettered: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class IngestionLimits:
    records_per_poll_max: int = 500
    record_size_max_bytes: int = 32 * 1024 * 1024
    backoff_s_max: float = 10.0


class SubscriptionRunner:
    def __init__(
        self,
        sub: Subscription,
        cluster: KafkaCluster,
        runtime: Runtime,
        registry: Registry,
        limits: IngestionLimits,
        stats: SubscriptionStats,
    ) -> None:
        self.sub = sub
        self.cluster = cluster
        self._runtime = runtime
        self._registry = registry
        self._limits = limits
        self._stats = stats
        self.stop = asyncio.Event()  # set: finish the batch in hand, commit, leave (drain)

    async def run(self, after: asyncio.Task[None] | None = None) -> None:
        if after is not None:
            await asyncio.wait([after])  # the previous runner of this subscription drains first
        backoff_s = BACKOFF_S_INITIAL
        while not self.stop.is_set():
            try:
                await self._consume()
                return
            except (ConsumerFailed, Unavailable, PoisonRecord) as exc:
                self._stats.last_error = str(exc)
                log.warning(
                    "consumer of subscription %s failed, restarting in %.1f s: %s",
                    self.sub.id,
                    backoff_s,
                    exc,
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), backoff_s)
            backoff_s = min(self._limits.backoff_s_max, backoff_s * 2)

    async def _consume(self) -> None:
        sub = self.sub
        consumer = KafkaConsumer(consumer_config(self.cluster.properties, sub.options), sub.topic, sub.id)
        dead = DeadLetters(self.cluster.properties, sub)
        try:
            await consumer.open()
            while not self.stop.is_set():
                records = await consumer.poll(self._limits.records_per_poll_max)
                if self.stop.is_set():
                    break  # stopped while polling: these records are not ours to ingest any more
                try:
                    if records:
                        await self._ingest(consumer, dead, records)
                        self._stats.last_error = None
                finally:
                    lag = await consumer.lag(self._stats.durable)
                    self._stats.partitions = {(sub.topic, p): ph for p, ph in lag.items()}
        finally:
            await asyncio.shield(self._close(consumer, dead))

    @staticmethod
    async def _close(consumer: KafkaConsumer, dead: DeadLetters) -> None:
        await consumer.close()
        await dead.close()

    async def _ingest(self, consumer: KafkaConsumer, dead: DeadLetters, records: list[KafkaRecord]) -> None:
        sub, runtime = self.sub, self._runtime
        waits: list[asyncio.Future[Reply]] = []
        done: dict[int, int] = {}  # partition -> next offset, once everything before it is durable
        poison: PoisonRecord | None = None
        for rec in records:
            try:
                req = to_request(sub, rec, self._registry, self._limits.record_size_max_bytes)
            except PoisonRecord as exc:
                if not await self._on_poison(dead, rec, exc):
                    poison = exc
                    break
                done[rec.partition] = rec.offset + 1
                continue
            if not runtime.healthy:
                raise Unavailable("the store cannot write")
            token, fut = runtime.request()
            runtime.submit(
                Ingest(req, producer_key(sub, rec.topic, rec.partition), rec.offset, sub.id, token)
            )
            waits.append(fut)
            done[rec.partition] = rec.offset + 1
        if waits:
            await asyncio.gather(*waits)  # durable (or Unavailable: nothing stored, re-read, deduped)
        await dead.flush()
        self._stats.ingested += len(waits)
        await consumer.store(done)
        self._stats.durable.update(done)
        if poison is not None:
            raise poison

    async def _on_poison(self, dead: DeadLetters, rec: KafkaRecord, exc: PoisonRecord) -> bool:
        """True when the record is out of the way (skipped or dead-lettered); False: stall on it."""
        policy = self.sub.options.get(OPT_ON_POISON, "stall")
        where = f"{rec.topic}/{rec.partition}@{rec.offset}"
        if policy == "skip":
            log.warning("subscription %s skipped record %s: %s", self.sub.id, where, exc)
            self._stats.skipped += 1
            return True
        if policy == "dead-letter":
            log.warning("subscription %s dead-lettered record %s: %s", self.sub.id, where, exc)
            dead.send(rec, str(exc))
            self._stats.dead_lettered += 1
            return True
        return False


class Ingestion:
    """Starts a runner per active subscription, restarts it when its subscription or cluster changes,
    and drains it (finish, commit, leave) when the subscription is paused or deleted."""

    def __init__(
        self, catalog: KafkaCatalog, runtime: Runtime, registry: Registry, limits: IngestionLimits
    ) -> None:
        self._catalog = catalog
        self._runtime = runtime
        self._registry = registry
        self._limits = limits
        self._runners: dict[str, tuple[SubscriptionRunner, asyncio.Task[None]]] = {}
        self._draining: set[asyncio.Task[None]] = set()
        self.stats: dict[str, SubscriptionStats] = {}
        self._tg: asyncio.TaskGroup | None = None

    def start(self, tg: asyncio.TaskGroup) -> None:
        """Run the active subscriptions' consumers in `tg` and follow the catalog from now on."""
        self._tg = tg
        self._catalog.on_change.append(self._reconcile)
        self._reconcile()

    def _wanted(self) -> dict[str, tuple[Subscription, KafkaCluster]]:
        out = {}
        for sub in self._catalog.subscriptions():
            cluster = self._catalog.cluster(sub.cluster)
            if cluster is None:
                log.warning("KafkaCluster '%s' not found for subscription %s", sub.cluster, sub.id)
            elif not sub.paused:
                out[sub.id] = (sub, cluster)
        return out

    def _reconcile(self) -> None:
        assert self._tg is not None, "bind() the server's TaskGroup first"
        wanted = self._wanted()
        previous: dict[str, asyncio.Task[None]] = {}
        for sub_id, (runner, task) in list(self._runners.items()):
            if wanted.get(sub_id) != (runner.sub, runner.cluster):
                runner.stop.set()
                del self._runners[sub_id]
                previous[sub_id] = task
                self._draining.add(task)
                task.add_done_callback(self._draining.discard)
        known = {s.id for s in self._catalog.subscriptions()}
        for sub_id in [s for s in self.stats if s not in known]:
            del self.stats[sub_id]
        for sub_id, (sub, cluster) in wanted.items():
            if sub_id in self._runners:
                continue
            stats = self.stats.setdefault(sub_id, SubscriptionStats())
            runner = SubscriptionRunner(sub, cluster, self._runtime, self._registry, self._limits, stats)
            task = self._tg.create_task(runner.run(previous.get(sub_id)), name=f"kafka-{sub_id}")
            self._runners[sub_id] = (runner, task)

    def tasks(self) -> list[asyncio.Task[None]]:
        return [task for _, task in self._runners.values()] + list(self._draining)

    async def drain(self) -> None:
        """Graceful stop: every runner finishes its batch and commits."""
        if self._reconcile in self._catalog.on_change:
            self._catalog.on_change.remove(self._reconcile)
        tasks = self.tasks()
        for runner, _ in self._runners.values():
            runner.stop.set()
        if tasks:
            await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)

    def lag_rows(self) -> tuple[SubscriptionLagRow, ...]:
        """One row per subscription partition: position (next offset not yet durable), high watermark."""
        return tuple(
            SubscriptionLagRow(sub_id, topic, part, pos, high, max(0, high - pos))
            for sub_id, st in self.stats.items()
            for (topic, part), (pos, high) in sorted(st.partitions.items())
        )
