"""The one door from the server's hot paths to telemetry: the ingress, the invoker and the
runtime report events here, and the hub hands them to what is enabled (Prometheus metrics,
OpenTelemetry traces). With nothing enabled the server holds no hub at all (`None`), so an
event costs one `is not None` check."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perdure.server.processor.effects import Completed

if TYPE_CHECKING:
    from perdure.server.telemetry.metrics import Metrics


class Telemetry:
    def __init__(self, metrics: Metrics | None = None) -> None:
        self.metrics = metrics

    # ingress
    def ingress_admitted(self) -> None:
        if self.metrics is not None:
            self.metrics.ingress_admitted()

    def ingress_completed(self, service: str, rpc_type: str, seconds: float) -> None:
        if self.metrics is not None:
            self.metrics.ingress_completed(service, rpc_type, seconds)

    # invoker
    def attempt_started(self) -> None:
        if self.metrics is not None:
            self.metrics.attempt_started()

    def attempt_ended(self, status: str, deployment_type: str, response_status: int | None) -> None:
        """`status`: completed, suspended or failed; `response_status` of the endpoint, if it answered."""
        m = self.metrics
        if m is not None:
            if response_status is not None:
                m.client_response(deployment_type, response_status)
            m.attempt_ended(status)

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
