"""What `sys_deployment` and `sys_service` show: a snapshot of the registry,
taken on the event loop before each query and handed to the query thread
(the registry lives in memory, not in the store's tables)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import orjson


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
class Catalog:
    deployments: tuple[DeploymentRow, ...] = field(default=())
    services: tuple[ServiceRow, ...] = field(default=())

    def to_json(self) -> tuple[str, str]:
        """(deployments, services) as JSON arrays, the form the views expand with json_each."""
        deployments = orjson.dumps([asdict(d) for d in self.deployments]).decode()
        services = orjson.dumps([asdict(s) for s in self.services]).decode()
        return deployments, services


CatalogSource = Callable[[], Catalog]


def empty_catalog() -> Catalog:
    return Catalog()
