"""Prometheus metrics, served as text at `/metrics` on the admin port.

Restate's core series keep their names and labels (`restate_ingress_requests_total`,
`restate_invoker_invocation_tasks_total`, `restate_invoker_client_requests_total`, the invoker's
concurrency slots), each with `cluster_name` and `node_name` as Restate gives every series. Beyond
Restate: per-handler invocation outcomes and durations, inbox depth and the age of the oldest
pending invocation per service (read from the store at scrape time), and the store's commit latency
and batch sizes.

The hot path only adds numbers: every labelled cell is looked up once and cached, so an event is a
dict lookup and an add, folded into Prometheus families at scrape time. prometheus_client is
imported when metrics are enabled, not before."""

from __future__ import annotations

import bisect
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


class _Family:
    """One counter or histogram family, kept as plain numbers: the hot path adds to a cell (a list
    cached per label values), a scrape folds the cells into prometheus_client's families. All adds
    happen on the event loop's thread, so no lock is taken (a locked prometheus_client child cost
    every event a mutex)."""

    __slots__ = ("buckets", "cells", "doc", "labels", "name")

    def __init__(self, name: str, doc: str, labels: list[str], buckets: tuple[float, ...] = ()) -> None:
        self.name = name
        self.doc = doc
        self.labels = labels
        self.buckets = buckets  # upper bounds (histograms); empty for a counter
        # counter: [value]; histogram: [count per bucket..., count above the last bound, sum]
        self.cells: dict[tuple[str, ...], list[float]] = {}

    def cell(self, values: tuple[str, ...]) -> list[float]:
        cell = self.cells.get(values)
        if cell is None:
            cell = self.cells[values] = [0.0] * (len(self.buckets) + 2 if self.buckets else 1)
        return cell

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily

        if not self.buckets:
            counter = CounterMetricFamily(self.name, self.doc, labels=self.labels)
            for values, cell in self.cells.items():
                counter.add_metric(list(values), cell[0])
            return counter
        histogram = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        bounds = [*(_bound(b) for b in self.buckets), "+Inf"]
        for values, cell in self.cells.items():
            running = 0.0
            cumulative = []
            for bound, count in zip(bounds, cell, strict=False):
                running += count
                cumulative.append((bound, running))
            histogram.add_metric(list(values), cumulative, cell[-1])
        return histogram


def _bound(b: float) -> str:
    return repr(float(b))


def _observe(cell: list[float], buckets: tuple[float, ...], value: float) -> None:
    cell[bisect.bisect_left(buckets, value)] += 1
    cell[-1] += value


class _Families:
    """The counters and histograms as one collector of the registry."""

    def __init__(self, families: list[_Family]) -> None:
        self._families = families

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        for family in self._families:
            yield family.collect()


class Metrics:
    """Every series of the server, in a registry of its own."""

    def __init__(self, node_name: str | None = None) -> None:
        from prometheus_client import CollectorRegistry, Gauge

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self._node = (CLUSTER_NAME, node_name or socket.gethostname())
        r = self.registry
        node = ["cluster_name", "node_name"]
        self._ingress = _Family(
            "restate_ingress_requests",
            "Ingress requests, by status (admitted, completed)",
            [*node, "status", "rpc_service", "rpc_type"],
        )
        self._ingress_duration = _Family(
            "restate_ingress_request_duration_seconds",
            "Time from an ingress request to its answer",
            [*node, "rpc_service", "rpc_type"],
            DURATION_BUCKETS_S,
        )
        self._tasks = _Family(
            "restate_invoker_invocation_tasks",
            "Invocation attempts of the invoker, by status (started, completed, suspended, failed)",
            [*node, "status", "transient", "partition_id"],
        )
        self._client = _Family(
            "restate_invoker_client_requests",
            "Requests to service endpoints, by deployment type and HTTP status code",
            [*node, "type", "status_code"],
        )
        self._limit = Gauge(
            "restate_invoker_concurrency_limit", "Attempts allowed in flight", node, registry=r
        )
        self._acquired = _Family("restate_invoker_concurrency_slots_acquired", "Attempt slots taken", node)
        self._released = _Family(
            "restate_invoker_concurrency_slots_released", "Attempt slots given back", node
        )
        self._invocations = _Family(
            "perdure_invocations",
            "Completed invocations per handler, by outcome (success, failure)",
            [*node, "service", "handler", "outcome"],
        )
        self._invocation_duration = _Family(
            "perdure_invocation_duration_seconds",
            "Time from an invocation's creation to its completion, per handler",
            [*node, "service", "handler"],
            DURATION_BUCKETS_S,
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
        self._commit = _Family(
            "perdure_store_commit_duration_seconds",
            "Time of one group commit (one transaction, one fsync)",
            node,
            COMMIT_BUCKETS_S,
        )
        self._batch = _Family(
            "perdure_store_batch_commands", "Commands applied in one group commit", node, BATCH_BUCKETS
        )
        r.register(
            _Families(
                [
                    self._ingress,
                    self._ingress_duration,
                    self._tasks,
                    self._client,
                    self._acquired,
                    self._released,
                    self._invocations,
                    self._invocation_duration,
                    self._commit,
                    self._batch,
                ]
            )
        )
        self._children: dict[tuple[Any, ...], list[float]] = {}
        self._gauges: dict[tuple[Any, ...], Any] = {}
        self._backlog_services: set[str] = set()
        self._ingress_admitted = self._ingress.cell((*self._node, "admitted", "", ""))
        self._started = self._tasks.cell((*self._node, "started", "", PARTITION))
        self._commit_cell = self._commit.cell(self._node)
        self._batch_cell = self._batch.cell(self._node)
        self._acquired_cell = self._acquired.cell(self._node)
        self._released_cell = self._released.cell(self._node)

    def _cell(self, family: _Family, *labels: str) -> list[float]:
        key = (id(family), *labels)
        cell = self._children.get(key)
        if cell is None:
            cell = self._children[key] = family.cell((*self._node, *labels))
        return cell

    def _gauge(self, gauge: Any, *labels: str) -> Any:
        key = (id(gauge), *labels)
        child = self._gauges.get(key)
        if child is None:
            child = self._gauges[key] = gauge.labels(*self._node, *labels)
        return child

    # ------------------------------------------------------------------ ingress

    def ingress_admitted(self) -> None:
        self._ingress_admitted[0] += 1

    def ingress_completed(self, service: str, rpc_type: str, seconds: float) -> None:
        """`rpc_type` is Restate's: "call" or "send"."""
        self._cell(self._ingress, "completed", service, rpc_type)[0] += 1
        _observe(self._cell(self._ingress_duration, service, rpc_type), DURATION_BUCKETS_S, seconds)

    # ------------------------------------------------------------------ invoker

    def concurrency_limit(self, limit: int) -> None:
        self._limit.labels(*self._node).set(limit)

    def attempt_started(self) -> None:
        self._started[0] += 1
        self._acquired_cell[0] += 1

    def attempt_ended(self, status: str) -> None:
        """`status`: "completed", "suspended", "failed" (a failed attempt is retried: transient) or
        "aborted" (killed, cancelled or parked by the server: only its slot is counted)."""
        if status != "aborted":
            transient = "true" if status == "failed" else ""
            self._cell(self._tasks, status, transient, PARTITION)[0] += 1
        self._released_cell[0] += 1

    def client_response(self, deployment_type: str, status_code: int) -> None:
        self._cell(self._client, deployment_type, str(status_code))[0] += 1

    # ------------------------------------------------------------------ processor and store

    def invocation_completed(self, service: str, handler: str, failed: bool, seconds: float) -> None:
        self._cell(self._invocations, service, handler, "failure" if failed else "success")[0] += 1
        _observe(
            self._cell(self._invocation_duration, service, handler), DURATION_BUCKETS_S, max(0.0, seconds)
        )

    def committed(self, commands: int, seconds: float) -> None:
        _observe(self._commit_cell, COMMIT_BUCKETS_S, seconds)
        _observe(self._batch_cell, BATCH_BUCKETS, commands)

    def backlog(self, rows: Iterable[tuple[str, int, float]]) -> None:
        """Inbox depth and oldest-pending age per service: (service, depth, age in seconds).
        Services whose inbox emptied since the last scrape drop to zero."""
        seen = set()
        for service, depth, age_s in rows:
            seen.add(service)
            self._gauge(self._inbox_depth, service).set(depth)
            self._gauge(self._oldest_pending, service).set(age_s)
        for service in self._backlog_services - seen:
            self._gauge(self._inbox_depth, service).set(0)
            self._gauge(self._oldest_pending, service).set(0)
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
