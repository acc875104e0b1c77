"""When a failed attempt is tried again: Restate's retry policy (exponential backoff with a cap,
a maximum number of attempts), or the delay the SDK asked for."""

from __future__ import annotations

from perdure.server.processor.schema import PolicyView

# Restate's defaults when the service's policy is unknown (its deployment was removed).
DEFAULT_MAX_ATTEMPTS = 70
DEFAULT_INITIAL_INTERVAL_MS = 500
DEFAULT_FACTOR = 2.0
DEFAULT_MAX_INTERVAL_MS = 60_000


def retry_delay(policy: PolicyView | None, attempts_made: int, asked_delay_ms: int | None) -> int | None:
    """Milliseconds until the next attempt, or None when the attempts are exhausted (the policy's
    `retry_on_max_attempts` then says whether the invocation is killed or paused)."""
    max_attempts = policy.retry_max_attempts if policy else DEFAULT_MAX_ATTEMPTS
    if attempts_made >= max_attempts:
        return None
    if asked_delay_ms is not None:
        return asked_delay_ms
    initial = policy.retry_initial_interval_ms if policy else DEFAULT_INITIAL_INTERVAL_MS
    factor = policy.retry_exponentiation_factor if policy else DEFAULT_FACTOR
    cap = policy.retry_max_interval_ms if policy else DEFAULT_MAX_INTERVAL_MS
    return int(min(cap, initial * factor ** max(0, attempts_made - 1)))
