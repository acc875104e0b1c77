"""Exceptions users see (TerminalError) and the internal ones that unwind a
handler when its attempt ends (suspension, retryable failure)."""

from __future__ import annotations

from datetime import timedelta


class TerminalError(Exception):
    """Raise it to fail an invocation (or a `ctx.run`) without retries."""

    def __init__(self, message: str, status_code: int = 500, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.metadata = metadata


class RetryableError(Exception):
    """Raise it to ask for a retry after an explicit delay."""

    def __init__(self, message: str, status_code: int = 500, retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.retry_after = retry_after


class SdkInternalBaseException(BaseException):
    """Unwinds handler code when the attempt ends; do not catch it. A BaseException
    so that `except Exception:` in user code lets it through."""


class SuspendedException(SdkInternalBaseException):
    """The invocation suspended; the server resumes it when progress can be made."""

    def __init__(self) -> None:
        super().__init__("Invocation got suspended; Restate resumes it when progress can be made.")


class AttemptFailed(SdkInternalBaseException):
    """The attempt ended with a retryable error already reported to the server."""

    def __init__(self, cause: BaseException | None = None) -> None:
        super().__init__("Invocation attempt failed with a retryable error; Restate retries it.")
        self.cause = cause


def is_internal_exception(e: BaseException) -> bool:
    """True for the SDK's own control-flow exceptions."""
    return isinstance(e, SdkInternalBaseException)
