"""Options users pass: retry policy of `ctx.run` and of whole invocations."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Literal, TypeVar

from perdure.sdk.serde import DefaultSerde, Serde

T = TypeVar("T")

RUN_RETRY_INTERVAL_DEFAULT = timedelta(milliseconds=50)
RUN_RETRY_INTERVAL_MAX_DEFAULT = timedelta(seconds=10)
RUN_RETRY_FACTOR_DEFAULT = 2.0


@dataclass
class RunOptions(Generic[T]):
    """How a `ctx.run` action is serialized and retried. Without retry fields the
    invocation's own retry policy (on the server) applies."""

    serde: Serde[T] = field(default_factory=DefaultSerde)
    type_hint: type[T] | None = None
    max_attempts: int | None = None
    max_duration: timedelta | None = None
    initial_retry_interval: timedelta | None = None
    max_retry_interval: timedelta | None = None
    retry_interval_factor: float | None = None
    max_retry_duration: timedelta | None = None  # deprecated alias of max_duration

    def has_retry_policy(self) -> bool:
        return any(
            v is not None
            for v in (
                self.max_attempts,
                self.max_duration,
                self.initial_retry_interval,
                self.max_retry_interval,
                self.retry_interval_factor,
                self.max_retry_duration,
            )
        )

    def retry_delay(self, retries_done: int) -> timedelta:
        """Delay before the next attempt after `retries_done` failed retries."""
        initial = self.initial_retry_interval or RUN_RETRY_INTERVAL_DEFAULT
        factor = self.retry_interval_factor or RUN_RETRY_FACTOR_DEFAULT
        cap = self.max_retry_interval or RUN_RETRY_INTERVAL_MAX_DEFAULT
        return min(initial * (factor**retries_done), cap)


@dataclass
class InvocationRetryPolicy:
    """Retry policy the server applies to failed invocations (manifest v4)."""

    initial_interval: timedelta | None = None
    exponentiation_factor: float | None = None
    max_interval: timedelta | None = None
    max_attempts: int | None = None
    on_max_attempts: Literal["pause", "kill"] | None = None

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.initial_interval is not None:
            out["retryPolicyInitialInterval"] = _ms(self.initial_interval)
        if self.exponentiation_factor is not None:
            out["retryPolicyExponentiationFactor"] = self.exponentiation_factor
        if self.max_interval is not None:
            out["retryPolicyMaxInterval"] = _ms(self.max_interval)
        if self.max_attempts is not None:
            out["retryPolicyMaxAttempts"] = self.max_attempts
        if self.on_max_attempts is not None:
            out["retryPolicyOnMaxAttempts"] = self.on_max_attempts.upper()
        return out


def _ms(d: timedelta) -> int:
    return int(d.total_seconds() * 1000)
