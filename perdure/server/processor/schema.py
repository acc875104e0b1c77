"""What the processor needs to know of registered services. The registry
implements it; the simulation uses a small fixed schema."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol


class PolicyView(Protocol):
    """Timeouts and retry policy of an attempt: a handler's effective values (its own option,
    else its service's, else the server default), or a service's."""

    @property
    def inactivity_timeout_ms(self) -> int: ...
    @property
    def abort_timeout_ms(self) -> int: ...
    @property
    def retry_initial_interval_ms(self) -> int: ...
    @property
    def retry_exponentiation_factor(self) -> float: ...
    @property
    def retry_max_attempts(self) -> int: ...
    @property
    def retry_max_interval_ms(self) -> int: ...
    @property
    def retry_on_max_attempts(self) -> str: ...  # "PAUSE" | "KILL"


class HandlerView(PolicyView, Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ty(self) -> str | None: ...  # "EXCLUSIVE" | "SHARED" | "WORKFLOW" | None


class ServiceView(PolicyView, Protocol):
    @property
    def name(self) -> str: ...
    @property
    def ty(self) -> str: ...  # "SERVICE" | "VIRTUAL_OBJECT" | "WORKFLOW"
    @property
    def handlers(self) -> Mapping[str, HandlerView]: ...
    @property
    def deployment_id(self) -> str: ...
    @property
    def idempotency_retention_ms(self) -> int: ...
    @property
    def journal_retention_ms(self) -> int: ...


class Schema(Protocol):
    def service(self, name: str) -> ServiceView | None: ...


SERVICE_TY = {"SERVICE": "service", "VIRTUAL_OBJECT": "virtual_object", "WORKFLOW": "workflow"}


def policy_of(service: ServiceView, handler: str) -> PolicyView:
    """The policy an attempt of `service.handler` runs under (the handler's, which already
    folds in the service's and the defaults; the service's for an unknown handler)."""
    return service.handlers.get(handler) or service


def handler_kind(service: ServiceView, handler: HandlerView) -> str | None:
    """Lower-case handler kind as the processor's Target uses it."""
    if service.ty == "SERVICE":
        return None
    if handler.ty is None:
        return "workflow" if service.ty == "WORKFLOW" else "exclusive"
    return handler.ty.lower()
