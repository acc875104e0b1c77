"""The Kafka catalog: clusters (registered through the admin API, plus static ones from the
configuration) and subscriptions, with Restate 1.7's rules. Held in memory and persisted as one JSON
document (`kafka`) through the store's metadata door on every change; `on_change` listeners follow."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from perdure.protocol.ids import new_subscription_id
from perdure.server.kafka.model import (
    OPT_PAUSED,
    KafkaAdminError,
    KafkaCluster,
    Subscription,
    check_cluster_properties,
    check_perdure_options,
    cluster_name_error,
    parse_sink,
    parse_source,
    sink_not_found,
)
from perdure.server.registry import MetadataStore, Registry

CATALOG_KEY = "kafka"
CATALOG_FORMAT = 1
DEFAULT_CLIENT_ID = "restate"


def static_clusters(raw: list[Any]) -> tuple[KafkaCluster, ...]:
    """The configuration's clusters (Restate's `[[ingress.kafka-clusters]]`: `name`, `brokers`, and any
    librdkafka property beside them), as Restate reads them: `metadata.broker.list` = the brokers,
    created at the epoch. Raises ValueError for an entry it cannot read."""
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ValueError(f"ingress.kafka-clusters: every cluster needs a name, got {item!r}")
        brokers = item.get("brokers", [])
        if not isinstance(brokers, list) or not all(isinstance(b, str) for b in brokers):
            raise ValueError(f"ingress.kafka-clusters '{item['name']}': brokers must be a list of strings")
        props = {str(k): str(v) for k, v in item.items() if k not in ("name", "brokers")}
        if brokers:
            props["metadata.broker.list"] = ",".join(brokers)
        out.append(KafkaCluster(item["name"], props, created_at_ms=0, static=True))
    return tuple(out)


class KafkaCatalog:
    def __init__(
        self, store: MetadataStore, registry: Registry, static: tuple[KafkaCluster, ...] = ()
    ) -> None:
        self._store = store
        self._registry = registry
        self._static = {c.name: c for c in static}
        self._clusters: dict[str, KafkaCluster] = {}
        self._subs: dict[str, Subscription] = {}
        self._lock = asyncio.Lock()
        # Called after every change, before the admin API answers (so a deleted subscription's
        # consumer is told to stop before the client hears 202).
        self.on_change: list[Callable[[], None]] = []

    @classmethod
    async def load(
        cls, store: MetadataStore, registry: Registry, static: tuple[KafkaCluster, ...] = ()
    ) -> KafkaCatalog:
        cat = cls(store, registry, static)
        raw = await store.get_meta(CATALOG_KEY)
        if raw is not None:
            doc = orjson.loads(raw)
            assert doc.get("format") == CATALOG_FORMAT, f"unknown kafka catalog format {doc.get('format')}"
            for c in doc["clusters"]:
                cat._clusters[c["name"]] = KafkaCluster(c["name"], dict(c["properties"]), c["created_at_ms"])
            for s in doc["subscriptions"]:
                cat._subs[s["id"]] = Subscription(
                    s["id"], s["cluster"], s["topic"], s["service"], s["handler"], dict(s["options"])
                )
        return cat

    # ------------------------------------------------------------------ reads

    def clusters(self) -> list[tuple[KafkaCluster, list[str]]]:
        """Dynamic clusters first (with a note when they shadow a static one), then unshadowed static."""
        out = [(c, self._shadow_info(c.name)) for c in self._clusters.values()]
        out += [(c, []) for name, c in self._static.items() if name not in self._clusters]
        return out

    def cluster(self, name: str) -> KafkaCluster | None:
        return self._clusters.get(name) or self._static.get(name)

    def cluster_info(self, name: str) -> list[str]:
        return self._shadow_info(name) if name in self._clusters else []

    def _shadow_info(self, name: str) -> list[str]:
        if name not in self._static:
            return []
        return [f"A static Kafka cluster named '{name}' is shadowed by this registered cluster."]

    def subscriptions(self, source: str | None = None, sink: str | None = None) -> list[Subscription]:
        return [
            s
            for s in self._subs.values()
            if (source is None or s.source == source) and (sink is None or s.sink == sink)
        ]

    def subscription(self, sub_id: str) -> Subscription | None:
        return self._subs.get(sub_id)

    # ------------------------------------------------------------------ clusters

    async def add_cluster(self, name: str, props: Mapping[str, str], now_ms: int) -> KafkaCluster:
        problem = cluster_name_error(name)
        if problem is not None:
            raise KafkaAdminError(400, problem)
        async with self._lock:
            if name in self._static:
                raise KafkaAdminError(
                    409, f"kafka cluster '{name}' conflicts with static configuration, choose another name"
                )
            if name in self._clusters:
                raise KafkaAdminError(409, f"kafka cluster '{name}' already exists in schema registry")
            check_cluster_properties(name, props)
            cluster = KafkaCluster(name, dict(props), now_ms)
            await self._commit({**self._clusters, name: cluster}, self._subs)
            return cluster

    def _refuse_static(self, name: str) -> None:
        if name in self._static and name not in self._clusters:
            raise KafkaAdminError(
                409,
                f"kafka cluster '{name}' cannot be updated, because it was defined in the restate "
                "configuration file. Update the configuration file instead.",
            )

    async def update_cluster(self, name: str, props: Mapping[str, str]) -> KafkaCluster:
        async with self._lock:
            self._refuse_static(name)
            old = self._clusters.get(name)
            if old is None:
                raise KafkaAdminError(404, f"not found in the schema registry: kafka cluster '{name}'")
            check_cluster_properties(name, props)
            cluster = KafkaCluster(name, dict(props), old.created_at_ms)
            await self._commit({**self._clusters, name: cluster}, self._subs)
            return cluster

    async def remove_cluster(self, name: str, force: bool) -> None:
        async with self._lock:
            self._refuse_static(name)
            if name not in self._clusters:
                raise KafkaAdminError(404, f"not found in the schema registry: kafka cluster named '{name}'")
            users = [s for s in self._subs.values() if s.cluster == name]
            if users and not force and name not in self._static:
                raise KafkaAdminError(
                    409,
                    f"Removing the kafka cluster '{name}' leads to subscription '{users[0].id}' "
                    "being orphan. Remove the subscription first, or use the 'force' flag.",
                )
            await self._commit({k: v for k, v in self._clusters.items() if k != name}, self._subs)

    # ------------------------------------------------------------------ subscriptions

    async def add_subscription(self, source: str, sink: str, options: Mapping[str, str]) -> Subscription:
        cluster_name, topic = parse_source(source)
        service_name, handler = parse_sink(sink)
        svc = self._registry.service(service_name)
        if svc is None or handler not in svc.handlers:
            raise sink_not_found(sink)
        check_perdure_options(options)
        async with self._lock:
            cluster = self.cluster(cluster_name)
            if cluster is None:
                names = ", ".join(f'"{c.name}"' for c, _ in self.clusters())
                raise KafkaAdminError(
                    400, f"Kafka cluster '{cluster_name}' not found. Available clusters: [{names}]"
                )
            sub_id = new_subscription_id()
            opts = dict(options)
            opts.setdefault("group.id", cluster.properties.get("group.id", sub_id))
            opts.setdefault("client.id", DEFAULT_CLIENT_ID)
            sub = Subscription(sub_id, cluster_name, topic, service_name, handler, opts)
            for other in self._subs.values():
                if other.source == sub.source and other.sink == sub.sink:
                    # Restate 1.7 accepts it and delivers every record twice (restatedev/restate#2007).
                    raise KafkaAdminError(
                        409,
                        f"a subscription from '{sub.source}' to '{sub.sink}' already exists: '{other.id}'",
                    )
            await self._commit(self._clusters, {**self._subs, sub_id: sub})
            return sub

    async def remove_subscription(self, sub_id: str) -> Subscription:
        async with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                raise KafkaAdminError(
                    404, f"not found in the schema registry: subscription with id '{sub_id}'"
                )
            await self._commit(self._clusters, {k: v for k, v in self._subs.items() if k != sub_id})
            return sub

    async def set_paused(self, sub_id: str, paused: bool) -> Subscription:
        async with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                raise KafkaAdminError(404, f"The requested subscription '{sub_id}' does not exist")
            opts = dict(sub.options)
            opts[OPT_PAUSED] = "true" if paused else "false"
            sub = Subscription(sub.id, sub.cluster, sub.topic, sub.service, sub.handler, opts)
            await self._commit(self._clusters, {**self._subs, sub_id: sub})
            return sub

    async def _commit(self, clusters: dict[str, KafkaCluster], subs: dict[str, Subscription]) -> None:
        """Persist the new catalog, then adopt it (a failed write changes nothing)."""
        doc = {
            "format": CATALOG_FORMAT,
            "clusters": [
                {"name": c.name, "properties": c.properties, "created_at_ms": c.created_at_ms}
                for c in clusters.values()
            ],
            "subscriptions": [
                {
                    "id": s.id,
                    "cluster": s.cluster,
                    "topic": s.topic,
                    "service": s.service,
                    "handler": s.handler,
                    "options": s.options,
                }
                for s in subs.values()
            ],
        }
        await self._store.put_meta(CATALOG_KEY, orjson.dumps(doc))
        self._clusters, self._subs = clusters, subs
        for listener in self.on_change:
            listener()
