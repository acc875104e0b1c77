"""`restate.context` compatibility: the context and future types, so
`from perdure.context import ...` works wherever a service imports them from
`restate.context`."""

from perdure.sdk.context import (
    AttemptFinishedEvent,
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    WorkflowContext,
    WorkflowSharedContext,
)
from perdure.sdk.futures import (
    DurablePromise,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from perdure.sdk.options import RunOptions

__all__ = [
    "AttemptFinishedEvent",
    "Context",
    "DurablePromise",
    "ObjectContext",
    "ObjectSharedContext",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RunOptions",
    "SendHandle",
    "WorkflowContext",
    "WorkflowSharedContext",
]
