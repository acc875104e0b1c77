"""`restate.exceptions` compatibility: errors, so `from perdure.exceptions import ...`
works wherever a service imports `from restate.exceptions import ...`."""

from perdure.sdk.errors import (
    RetryableError,
    SdkInternalBaseException,
    SuspendedException,
    TerminalError,
    is_internal_exception,
)

__all__ = [
    "RetryableError",
    "SdkInternalBaseException",
    "SuspendedException",
    "TerminalError",
    "is_internal_exception",
]
