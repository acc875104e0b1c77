"""Perdure's pure-Python SDK, source-compatible with restate-sdk 1.3.0:
`import perdure as restate` runs services written for the official SDK."""

from perdure.sdk.asgi import Endpoint, app
from perdure.sdk.combinators import as_completed, gather, select, wait_completed
from perdure.sdk.context import (
    AttemptFinishedEvent,
    Context,
    ObjectContext,
    ObjectSharedContext,
    Request,
    WorkflowContext,
    WorkflowSharedContext,
)
from perdure.sdk.errors import (
    RetryableError,
    SdkInternalBaseException,
    TerminalError,
    is_internal_exception,
)
from perdure.sdk.futures import (
    DurableCallFuture,
    DurableFuture,
    DurablePromise,
    DurableSleepFuture,
    RestateDurableCallFuture,
    RestateDurableFuture,
    RestateDurableSleepFuture,
    SendHandle,
)
from perdure.sdk.options import InvocationRetryPolicy, RunOptions
from perdure.sdk.schedule import schedule, schedule_metadata
from perdure.sdk.serde import BytesSerde, DefaultSerde, JsonSerde, PydanticJsonSerde, Serde
from perdure.sdk.service import Service, VirtualObject, Workflow
from perdure.sdk.version import SDK_VERSION

__all__ = [
    "SDK_VERSION",
    "AttemptFinishedEvent",
    "BytesSerde",
    "Context",
    "DefaultSerde",
    "DurableCallFuture",
    "DurableFuture",
    "DurablePromise",
    "DurableSleepFuture",
    "Endpoint",
    "InvocationRetryPolicy",
    "JsonSerde",
    "ObjectContext",
    "ObjectSharedContext",
    "PydanticJsonSerde",
    "Request",
    "RestateDurableCallFuture",
    "RestateDurableFuture",
    "RestateDurableSleepFuture",
    "RetryableError",
    "RunOptions",
    "SdkInternalBaseException",
    "SendHandle",
    "Serde",
    "Service",
    "TerminalError",
    "VirtualObject",
    "Workflow",
    "WorkflowContext",
    "WorkflowSharedContext",
    "app",
    "as_completed",
    "gather",
    "is_internal_exception",
    "schedule",
    "schedule_metadata",
    "select",
    "wait_completed",
]
