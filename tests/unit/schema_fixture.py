"""A fixed schema for processor tests: the shapes the registry provides."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class H:
    name: str
    ty: str | None = None
    inactivity_timeout_ms: int = 60000
    abort_timeout_ms: int = 600000
    retry_initial_interval_ms: int = 500
    retry_exponentiation_factor: float = 2.0
    retry_max_attempts: int = 70
    retry_max_interval_ms: int = 60_000
    retry_on_max_attempts: str = "PAUSE"


@dataclass(frozen=True)
class S:
    name: str
    ty: str
    handlers: dict[str, H] = field(default_factory=dict)
    deployment_id: str = "dp_1test"
    idempotency_retention_ms: int = 86_400_000
    journal_retention_ms: int = 86_400_000
    inactivity_timeout_ms: int = 60_000
    abort_timeout_ms: int = 600_000
    retry_initial_interval_ms: int = 500
    retry_exponentiation_factor: float = 2.0
    retry_max_attempts: int = 70
    retry_max_interval_ms: int = 60_000
    retry_on_max_attempts: str = "PAUSE"


class FixedSchema:
    def __init__(self, *services: S) -> None:
        self._services = {s.name: s for s in services}

    def service(self, name: str) -> S | None:
        return self._services.get(name)


SCHEMA = FixedSchema(
    S("Greeter", "SERVICE", {"greet": H("greet")}),
    S("Counter", "VIRTUAL_OBJECT", {"add": H("add", "EXCLUSIVE"), "get": H("get", "SHARED")}),
    S("Flow", "WORKFLOW", {"run": H("run", "WORKFLOW"), "signal": H("signal", "SHARED")}),
)
