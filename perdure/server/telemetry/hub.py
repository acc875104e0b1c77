"""The one door from the server's hot paths to telemetry: the ingress, the invoker and the
runtime report events here, and the hub hands them to what is enabled (Prometheus metrics,
OpenTelemetry traces). With nothing enabled the server holds no hub at all (`None`), so an
event costs one `is not None` check."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perdure.server.processor.effects import Completed
from perdure.server.processor.model import Target

if TYPE_CHECKING:
    from perdure.server.invoker.attempt import Attempt
    from perdure.server.telemetry.metrics import Metrics
    from perdure.server.telemetry.tracing import IngressTrace, Tracing


class Telemetry:
    def __init__(self, metrics: Metrics | None = None, tracing: Tracing | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing

    def shutdown(self) -> None:
        if self.tracing is not None:
            self.tracing.shutdown()

    # ingress
    def ingress_admitted(self) -> None:
        if self.metrics is not None:
            self.metrics.ingress_admitted()

    def ingress_begin(self, scope: dict[str, Any], target: Target) -> IngressTrace | None:
        """The ingress and start spans of a new invocation (None without tracing)."""
        if self.tracing is None:
            return None
        client = scope.get("client")
        return self.tracing.ingress_begin(scope["headers"], target, tuple(client) if client else None)

    def ingress_completed(
        self,
        service: str,
        rpc_type: str,
        seconds: float,
        trace: IngressTrace | None,
        invocation_id: str | None,
    ) -> None:
        if self.metrics is not None:
            self.metrics.ingress_completed(service, rpc_type, seconds)
        if trace is not None and self.tracing is not None:
            self.tracing.ingress_end(trace, invocation_id)

    # invoker
    def attempt_started(self, attempt: Attempt) -> None:
        if self.metrics is not None:
            self.metrics.attempt_started()
        if self.tracing is not None and attempt.start.trace_parent is not None:
            ep = attempt.endpoint
            attempt.span, attempt.trace_headers = self.tracing.attempt_begin(
                attempt.start, ep.uri, ep.protocol_version
            )

    def attempt_ended(self, attempt: Attempt) -> None:
        """How it ended (completed, suspended, failed, aborted) and the endpoint's HTTP status."""
        m = self.metrics
        if m is not None:
            if attempt.response_status is not None:
                m.client_response(attempt.deployment_type, attempt.response_status)
            m.attempt_ended(attempt.ended_as)
        if self.tracing is not None and attempt.span is not None:
            self.tracing.attempt_end(attempt.span, attempt.ended_as)
            attempt.span = None

    # runtime
    def committed(self, commands: int, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.committed(commands, seconds)

    def completed(self, e: Completed) -> None:
        if self.metrics is not None:
            seconds = (e.completed_at_ms - e.created_at_ms) / 1000
            self.metrics.invocation_completed(
                e.target.service, e.target.handler, e.failure is not None, seconds
            )
        if self.tracing is not None and e.trace_parent is not None:
            self.tracing.completed(e)
