"""`restate.retry_policy` compatibility: the invocation retry policy, so
`from perdure.retry_policy import ...` works wherever a service imports
`from restate.retry_policy import ...`."""

from perdure.sdk.options import InvocationRetryPolicy

__all__ = ["InvocationRetryPolicy"]
