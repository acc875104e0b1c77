"""Perdure: a durable-execution server and SDK, wire-compatible with Restate.

`import perdure` gives the SDK's public API (the same names as restate-sdk),
loaded on first use so that the server (`perdure.server`), which shares this
package, does not pay for the SDK's imports."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from perdure.sdk import *  # noqa: F403
    from perdure.sdk import __all__ as __all__
    from perdure.sdk.version import SDK_VERSION as __version__  # noqa: F401
else:
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


def __getattr__(name: str) -> Any:
    if name == "__version__":
        return importlib.import_module("perdure.sdk.version").SDK_VERSION
    if name in __all__:
        return getattr(importlib.import_module("perdure.sdk"), name)
    raise AttributeError(f"module 'perdure' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])
