"""Service definitions: `Service`, `VirtualObject`, `Workflow` and their
`handler` decorators, with the same names and options as restate's."""

from __future__ import annotations

import typing
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Literal, TypeVar

from perdure.sdk.handler import (
    Handler,
    HandlerIO,
    HandlerKind,
    HandlerOptions,
    ServiceKind,
    ServiceTag,
    make_handler,
)
from perdure.sdk.options import InvocationRetryPolicy
from perdure.sdk.schedule import with_declared
from perdure.sdk.serde import DefaultSerde, Serde

T = TypeVar("T")
ContextManagers = list[Callable[[], typing.AsyncContextManager[None]]] | None


class _Definition:
    """What the three kinds of services share: a name, handlers, service options."""

    kind: ServiceKind

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: ContextManagers = None,
        enable_lazy_state: bool | None = None,
        workflow_retention: timedelta | None = None,
    ) -> None:
        self.service_tag = ServiceTag(self.kind, name, description, metadata)
        self.handlers: dict[str, Handler] = {}
        self.options = HandlerOptions(
            metadata=None,
            inactivity_timeout=inactivity_timeout,
            abort_timeout=abort_timeout,
            journal_retention=journal_retention,
            idempotency_retention=idempotency_retention,
            workflow_retention=workflow_retention,
            enable_lazy_state=enable_lazy_state,
            ingress_private=ingress_private,
            invocation_retry_policy=invocation_retry_policy,
            context_managers=invocation_context_managers,
        )

    @property
    def name(self) -> str:
        return self.service_tag.name

    def _add(
        self,
        name: str | None,
        kind: HandlerKind | None,
        accept: str,
        content_type: str,
        input_serde: Serde[Any],
        output_serde: Serde[Any],
        options: HandlerOptions,
    ) -> Callable[[T], T]:
        def decorate(fn: T) -> T:
            io = HandlerIO(accept, content_type, input_serde, output_serde)
            managers = (self.options.context_managers or []) + (options.context_managers or [])
            options.context_managers = managers or None
            options.metadata = with_declared(options.metadata, fn)
            handler = make_handler(self.service_tag, io, name, kind, typing.cast(Any, fn), options)
            if handler.name in self.handlers:
                raise ValueError(f"Handler {handler.name} already exists in {self.name}")
            self.handlers[handler.name] = handler
            return fn

        return decorate


class Service(_Definition):
    """A stateless service: handlers run concurrently, without a key."""

    kind: ServiceKind = "service"

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: ContextManagers = None,
    ) -> None:
        super().__init__(
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: ContextManagers = None,
    ) -> Callable[[T], T]:
        """Decorate `async def fn(ctx: Context[, input]) -> output`."""
        options = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            None,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )
        return self._add(name, None, accept, content_type, input_serde, output_serde, options)


class _Keyed(_Definition):
    """Constructor of the keyed kinds (objects, workflows), in restate's order."""

    def __init__(
        self,
        name: str,
        description: str | None = None,
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: ContextManagers = None,
    ) -> None:
        super().__init__(
            name,
            description,
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
            enable_lazy_state=_lazy(enable_lazy_state, state_preload),
        )


class VirtualObject(_Keyed):
    """A keyed service with state; exclusive handlers run one at a time per key."""

    kind: ServiceKind = "object"

    def handler(
        self,
        name: str | None = None,
        kind: Literal["exclusive", "shared"] | None = "exclusive",
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: ContextManagers = None,
    ) -> Callable[[T], T]:
        """Decorate `async def fn(ctx: ObjectContext[, input])`; `kind="shared"` for
        concurrent read-only handlers (ObjectSharedContext)."""
        options = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            _lazy(enable_lazy_state, state_preload),
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )
        return self._add(name, kind or "exclusive", accept, content_type, input_serde, output_serde, options)


class Workflow(_Keyed):
    """A keyed service whose `main` handler runs once per key; shared handlers
    signal it through durable promises."""

    kind: ServiceKind = "workflow"

    def main(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        workflow_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: ContextManagers = None,
    ) -> Callable[[T], T]:
        """Decorate the workflow's entry point (WorkflowContext)."""
        options = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            None,
            workflow_retention,
            _lazy(enable_lazy_state, state_preload),
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )
        return self._add(name, "workflow", accept, content_type, input_serde, output_serde, options)

    def handler(
        self,
        name: str | None = None,
        accept: str = "application/json",
        content_type: str = "application/json",
        input_serde: Serde[Any] = DefaultSerde(),
        output_serde: Serde[Any] = DefaultSerde(),
        metadata: dict[str, str] | None = None,
        inactivity_timeout: timedelta | None = None,
        abort_timeout: timedelta | None = None,
        journal_retention: timedelta | None = None,
        idempotency_retention: timedelta | None = None,
        enable_lazy_state: bool | None = None,
        state_preload: bool | list[str] | None = None,
        ingress_private: bool | None = None,
        invocation_retry_policy: InvocationRetryPolicy | None = None,
        invocation_context_managers: ContextManagers = None,
    ) -> Callable[[T], T]:
        """Decorate a shared handler of the workflow (WorkflowSharedContext)."""
        options = HandlerOptions(
            metadata,
            inactivity_timeout,
            abort_timeout,
            journal_retention,
            idempotency_retention,
            None,
            _lazy(enable_lazy_state, state_preload),
            ingress_private,
            invocation_retry_policy,
            invocation_context_managers,
        )
        return self._add(name, "shared", accept, content_type, input_serde, output_serde, options)


def _lazy(enable_lazy_state: bool | None, state_preload: bool | list[str] | None) -> bool | None:
    if enable_lazy_state is not None and state_preload is not None:
        raise ValueError("set either state_preload or the deprecated enable_lazy_state, not both")
    if isinstance(state_preload, bool):
        return not state_preload
    return enable_lazy_state
