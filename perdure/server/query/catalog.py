"""What `sys_deployment` and `sys_service` show: a snapshot of the registry,
taken on the event loop before each query and handed to the query thread
(the registry lives in memory, not in the store's tables)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import orjson

from perdure.server.processor.schema import SERVICE_TY


@dataclass(frozen=True, slots=True)
class DeploymentRow:
    id: str
    endpoint: str
    created_at_ms: int
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[str, ...]
    ty: str = "http"  # "http" | "lambda"


@dataclass(frozen=True, slots=True)
class ServiceRow:
    name: str
    revision: int
    ty: str  # "service" | "virtual_object" | "workflow"
    deployment_id: str
    public: bool = True


@dataclass(frozen=True, slots=True)
class SubscriptionLagRow:
    subscription_id: str
    topic: str
    partition: int
    position: int  # next offset whose record is not yet durable as an invocation
    high_watermark: int
    lag: int


@dataclass(frozen=True, slots=True)
class Catalog:
    deployments: tuple[DeploymentRow, ...] = field(default=())
    services: tuple[ServiceRow, ...] = field(default=())
    subscription_lag: tuple[SubscriptionLagRow, ...] = field(default=())

    def subscription_lag_json(self) -> str:
        return orjson.dumps([asdict(r) for r in self.subscription_lag]).decode()

    def to_json(self) -> tuple[str, str]:
        """(deployments, services) as JSON arrays, the form the views expand with json_each."""
        deployments = orjson.dumps([asdict(d) for d in self.deployments]).decode()
        services = orjson.dumps([asdict(s) for s in self.services]).decode()
        return deployments, services


CatalogSource = Callable[[], Catalog]


def empty_catalog() -> Catalog:
    return Catalog()


class _ServiceLike(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ty(self) -> str: ...  # "SERVICE" | "VIRTUAL_OBJECT" | "WORKFLOW"
    @property
    def revision(self) -> int: ...
    @property
    def deployment_id(self) -> str: ...
    @property
    def public(self) -> bool: ...


class _DeploymentLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def uri(self) -> str: ...
    @property
    def created_at_ms(self) -> int: ...
    @property
    def min_protocol_version(self) -> int: ...
    @property
    def max_protocol_version(self) -> int: ...
    @property
    def services(self) -> Mapping[str, Any]: ...


class RegistryLike(Protocol):
    """What the catalog reads of the server's registry."""

    def services(self) -> Sequence[_ServiceLike]: ...
    def deployments(self) -> Sequence[_DeploymentLike]: ...


def registry_catalog(registry: RegistryLike) -> CatalogSource:
    """A catalog source reading the live registry (latest revision of each service)."""

    def snapshot() -> Catalog:
        return Catalog(
            deployments=tuple(
                DeploymentRow(
                    id=d.id,
                    endpoint=d.uri,
                    created_at_ms=d.created_at_ms,
                    min_protocol_version=d.min_protocol_version,
                    max_protocol_version=d.max_protocol_version,
                    services=tuple(d.services),
                )
                for d in registry.deployments()
            ),
            services=tuple(
                ServiceRow(s.name, s.revision, SERVICE_TY.get(s.ty, s.ty.lower()), s.deployment_id, s.public)
                for s in registry.services()
            ),
        )

    return snapshot


def with_subscription_lag(
    source: CatalogSource, lag: Callable[[], tuple[SubscriptionLagRow, ...]]
) -> CatalogSource:
    """`source` plus the Kafka consumers' lag rows (a fact of the server's memory)."""

    def snapshot() -> Catalog:
        return replace(source(), subscription_lag=lag())

    return snapshot
