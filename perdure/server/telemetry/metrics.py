"""Prometheus metrics, served as text at `/metrics` on the admin port.

Restate's core series keep their names and labels (`restate_ingress_requests_total`,
`restate_invoker_invocation_tasks_total`, `restate_invoker_client_requests_total`, the invoker's
concurrency slots), each with `cluster_name` and `node_name` as Restate gives every series. Beyond
Restate: per-handler invocation outcomes and durations, inbox depth and the age of the oldest
pending invocation per service (read from the store at scrape time), and the store's commit latency
and batch sizes.

The hot path only increments: every labelled child is looked up once and cached, so an event is a
dict lookup and a locked add. prometheus_client is imported when metrics are enabled, not before."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

CLUSTER_NAME = "localcluster"  # Restate's default cluster name
PARTITION = "0"  # one processor owns every partition of the node
DURATION_BUCKETS_S = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
COMMIT_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Every series of the server, in a registry of its own."""

    def __init__(self, node_name: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self._node = (CLUSTER_NAME, node_name or socket.gethostname())
        r = self.registry
        node = ["cluster_name", "node_name"]
        self._ingress = Counter(
            "restate_ingress_requests",
            "Ingress requests, by status (admitted, completed)",
            [*node, "status", "rpc_service", "rpc_type"],
            registry=r,
        )
        self._ingress_duration = Histogram(
            "restate_ingress_request_duration_seconds",
            "Time from an ingress request to its answer",
            [*node, "rpc_service", "rpc_type"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self._tasks = Counter(
            "restate_invoker_invocation_tasks",
            "Invocation attempts of the invoker, by status (started, completed, suspended, failed)",
            [*node, "status", "transient", "partition_id"],
            registry=r,
        )
        self._client = Counter(
            "restate_invoker_client_requests",
            "Requests to service endpoints, by deployment type and HTTP status code",
            [*node, "type", "status_code"],
            registry=r,
        )
        self._limit = Gauge(
            "restate_invoker_concurrency_limit", "Attempts allowed in flight", node, registry=r
        )
        self._acquired = Counter(
            "restate_invoker_concurrency_slots_acquired", "Attempt slots taken", node, registry=r
        )
        self._released = Counter(
            "restate_invoker_concurrency_slots_released", "Attempt slots given back", node, registry=r
        )
        self._invocations = Counter(
            "perdure_invocations",
            "Completed invocations per handler, by outcome (success, failure)",
            [*node, "service", "handler", "outcome"],
            registry=r,
        )
        self._invocation_duration = Histogram(
            "perdure_invocation_duration_seconds",
            "Time from an invocation's creation to its completion, per handler",
            [*node, "service", "handler"],
            buckets=DURATION_BUCKETS_S,
            registry=r,
        )
        self._inbox_depth = Gauge(
            "perdure_inbox_depth",
            "Invocations waiting in a keyed service's inbox",
            [*node, "service"],
            registry=r,
        )
        self._oldest_pending = Gauge(
            "perdure_oldest_pending_age_seconds",
            "Age of the oldest invocation waiting in the service's inbox",
            [*node, "service"],
            registry=r,
        )
        self._commit = Histogram(
            "perdure_store_commit_duration_seconds",
            "Time of one group commit (one transaction, one fsync)",
            node,
            buckets=COMMIT_BUCKETS_S,
            registry=r,
        )
        self._batch = Histogram(
            "perdure_store_batch_commands",
            "Commands applied in one group commit",
            node,
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self._backlog_services: set[str] = set()
        self._ingress_admitted = self._ingress.labels(*self._node, "admitted", "", "")
        self._started = self._tasks.labels(*self._node, "started", "", PARTITION)
        self._commit_child = self._commit.labels(*self._node)
        self._batch_child = self._batch.labels(*self._node)
        self._acquired_child = self._acquired.labels(*self._node)
        self._released_child = self._released.labels(*self._node)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*self._node, *labels)
        return child

    # ------------------------------------------------------------------ ingress

    def ingress_admitted(self) -> None:
        self._ingress_admitted.inc()

    def ingress_completed(self, service: str, rpc_type: str, seconds: float) -> None:
        """`rpc_type` is Restate's: "call" or "send"."""
        self._child(self._ingress, "completed", service, rpc_type).inc()
        self._child(self._ingress_duration, service, rpc_type).observe(seconds)

    # ------------------------------------------------------------------ invoker

    def concurrency_limit(self, limit: int) -> None:
        self._limit.labels(*self._node).set(limit)

    def attempt_started(self) -> None:
        self._started.inc()
        self._acquired_child.inc()

    def attempt_ended(self, status: str) -> None:
        """`status`: "completed", "suspended", "failed" (a failed attempt is retried: transient) or
        "aborted" (killed, cancelled or parked by the server: only its slot is counted)."""
        if status != "aborted":
            transient = "true" if status == "failed" else ""
            self._child(self._tasks, status, transient, PARTITION).inc()
        self._released_child.inc()

    def client_response(self, deployment_type: str, status_code: int) -> None:
        self._child(self._client, deployment_type, str(status_code)).inc()

    # ------------------------------------------------------------------ processor and store

    def invocation_completed(self, service: str, handler: str, failed: bool, seconds: float) -> None:
        self._child(self._invocations, service, handler, "failure" if failed else "success").inc()
        self._child(self._invocation_duration, service, handler).observe(max(0.0, seconds))

    def committed(self, commands: int, seconds: float) -> None:
        self._commit_child.observe(seconds)
        self._batch_child.observe(commands)

    def backlog(self, rows: Iterable[tuple[str, int, float]]) -> None:
        """Inbox depth and oldest-pending age per service: (service, depth, age in seconds).
        Services whose inbox emptied since the last scrape drop to zero."""
        seen = set()
        for service, depth, age_s in rows:
            seen.add(service)
            self._child(self._inbox_depth, service).set(depth)
            self._child(self._oldest_pending, service).set(age_s)
        for service in self._backlog_services - seen:
            self._child(self._inbox_depth, service).set(0)
            self._child(self._oldest_pending, service).set(0)
        self._backlog_services |= seen

    def limits_from(self, usage: Callable[[], list[dict[str, Any]]]) -> None:
        """Serve the concurrency and rate rules' state, read from `usage` at scrape time
        (`Limits.usage` rows: running, waiting, buckets, tokens, admitted, delayed)."""
        self.registry.register(_RuleCollector(self._node, usage))

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return bytes(generate_latest(self.registry))


class _RuleCollector:
    """Per-rule series of the rule book, built at each scrape (the processor's in-memory counts).
    `admitted` and `delayed` count since the processor started (a restart resets them, as a
    Prometheus counter may)."""

    _GAUGES = (
        ("running", "perdure_limit_running", "Invocations a rule counts as running, over all its values"),
        ("waiting", "perdure_limit_waiting", "Invocations queued (status ready) behind a rule"),
        ("buckets", "perdure_limit_buckets", "Values (service, handler or key) a rule counts now"),
        ("tokens", "perdure_limit_tokens", "Starts a rate rule allows now (its emptiest bucket)"),
    )
    _COUNTERS = (
        ("admitted", "perdure_limit_admitted", "Invocations a rule let start, at once or after waiting"),
        ("delayed", "perdure_limit_delayed", "Invocations that had to wait for a rule before starting"),
    )

    def __init__(self, node: tuple[str, str], usage: Callable[[], list[dict[str, Any]]]) -> None:
        self._node = list(node)
        self._usage = usage

    def describe(self) -> list[Any]:
        return []  # series appear with the first rule

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        labels = ["cluster_name", "node_name", "rule"]
        rows = self._usage()
        for field, name, doc in self._GAUGES:
            gauge = GaugeMetricFamily(name, doc, labels=labels)
            for row in rows:
                if row[field] is not None:
                    gauge.add_metric([*self._node, row["pattern"]], float(row[field]))
            yield gauge
        for field, name, doc in self._COUNTERS:
            counter = CounterMetricFamily(name, doc, labels=labels)
            for row in rows:
                counter.add_metric([*self._node, row["pattern"]], float(row[field]))
            yield counter
