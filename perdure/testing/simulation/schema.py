"""The simulated world's services: the shapes a registry would provide for a
Greeter service, a Counter virtual object and a Flow workflow.

Retries are fast and never exhausted, so a run reaches quiescence without
paused invocations; the processor's retry arithmetic is still exercised."""

from __future__ import annotations

from dataclasses import dataclass, field

DEPLOYMENT_ID = "dp_1simulation000000000000000"


@dataclass(frozen=True, slots=True)
class SimHandler:
    name: str
    ty: str | None = None  # "EXCLUSIVE" | "SHARED" | "WORKFLOW" | None
    inactivity_timeout_ms: int = 60000
    abort_timeout_ms: int = 600000
    retry_initial_interval_ms: int = 50
    retry_exponentiation_factor: float = 2.0
    retry_max_attempts: int = 1_000_000
    retry_max_interval_ms: int = 2_000
    retry_on_max_attempts: str = "PAUSE"


@dataclass(frozen=True, slots=True)
class SimService:
    name: str
    ty: str  # "SERVICE" | "VIRTUAL_OBJECT" | "WORKFLOW"
    handlers: dict[str, SimHandler] = field(default_factory=dict)
    deployment_id: str = DEPLOYMENT_ID
    idempotency_retention_ms: int = 86_400_000
    journal_retention_ms: int = 86_400_000
    inactivity_timeout_ms: int = 60_000
    abort_timeout_ms: int = 600_000
    retry_initial_interval_ms: int = 50
    retry_exponentiation_factor: float = 2.0
    retry_max_attempts: int = 1_000_000
    retry_max_interval_ms: int = 2_000
    retry_on_max_attempts: str = "PAUSE"


class SimSchema:
    """Implements the processor's `Schema` protocol over a fixed set of services."""

    def __init__(self, *services: SimService) -> None:
        self._services = {s.name: s for s in services}

    def service(self, name: str) -> SimService | None:
        return self._services.get(name)


SIM_SCHEMA = SimSchema(
    SimService("Greeter", "SERVICE", {"greet": SimHandler("greet")}),
    SimService(
        "Counter",
        "VIRTUAL_OBJECT",
        {"add": SimHandler("add", "EXCLUSIVE"), "get": SimHandler("get", "SHARED")},
    ),
    SimService(
        "Flow",
        "WORKFLOW",
        {"run": SimHandler("run", "WORKFLOW"), "signal": SimHandler("signal", "SHARED")},
    ),
)

COUNTER_KEYS = ("k0", "k1", "k2")
FLOW_KEYS = ("w0", "w1", "w2")
COUNTER_STATE_KEY = b"count"
SCRATCH_STATE_KEY = b"scratch"  # set then cleared by Counter.add: never visible at rest
PROMISE_NAME = "p"
