"""Which attempts are in flight: a fact of the server's memory, not of the
store. `sys_invocation.status` needs it to tell `running` from `ready` and
`backing-off`."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Protocol

from perdure.server.processor.model import Invocation
from perdure.server.query.engine import LiveAttempts


class ResidentInvocations(Protocol):
    def resident(self) -> Mapping[bytes, Invocation]: ...


def live_attempts_of(processor: ResidentInvocations) -> LiveAttempts:
    """The provider for `QueryEngine(live_attempts=...)`: ids whose attempt is live.
    Runs on the event loop, like the processor, so it reads a consistent view."""

    def live() -> Collection[bytes]:
        return frozenset(raw for raw, inv in processor.resident().items() if inv.attempt_live)

    return live
