"""OpenTelemetry traces in Restate's shape, exported over OTLP.

Per invocation, as Restate 1.7 exports them: `ingress {target}` (a child of the caller's W3C
`traceparent`), `invocation-start {target}` (a child of the ingress span, for a call and for a one-way
`/send` alike, as Restate 1.7.12 does), one `invocation-attempt {target}` per attempt
(a child of invocation-start, ended and exported when the attempt ends, so a retry loop shows
while it runs; its context goes to the service as `traceparent`), and `invocation-end {target}`.
Keyed targets are templated in names (`Counter/{key}/add`); `restate.invocation.target` keeps
the key. The start span's context is stored with the invocation, so attempts after a restart
still join its trace.

Configured as Restate's `tracing-endpoint`: `http(s)://host:port` is OTLP/gRPC,
`otlp+http(s)://host:port/v1/traces` is OTLP/HTTP. Without one, the standard
`OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` / `_PROTOCOL` variables enable it. This module (and the
OpenTelemetry SDK) is imported only when tracing is enabled."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from perdure.server.config import PERDURE_VERSION, VERSION
from perdure.server.processor.effects import Completed, StartAttempt
from perdure.server.processor.model import Target

EXPORT_DELAY_MS = 500  # spans leave in batches at least this often
OTLP_HTTP_SCHEME = "otlp+"
_PROPAGATOR = TraceContextTextMapPropagator()


class TracingConfigError(ValueError):
    """The tracing endpoint cannot be used (the operator's fault)."""


def exporter_for(endpoint: str | None, env: Mapping[str, str] = os.environ) -> SpanExporter | None:
    """The OTLP exporter for a Restate-style endpoint, or from OTEL_EXPORTER_OTLP_* variables;
    None when neither is set."""
    if endpoint:
        if endpoint.startswith(OTLP_HTTP_SCHEME):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

            return HttpExporter(endpoint=endpoint.removeprefix(OTLP_HTTP_SCHEME))
        if endpoint.startswith(("http://", "https://")):
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            return GrpcExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
        raise TracingConfigError(
            f"tracing endpoint {endpoint!r}: use http(s)://HOST:PORT for OTLP/gRPC or "
            "otlp+http(s)://HOST:PORT/v1/traces for OTLP/HTTP"
        )
    if not (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")):
        return None
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcEnvExporter

        return GrpcEnvExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpEnvExporter

    return HttpEnvExporter()  # the OpenTelemetry default protocol, http/protobuf


def span_target(t: Target) -> str:
    """Restate's templated target in span names: `Counter/{key}/add`, `Greeter/greet`."""
    return f"{t.service}/{{key}}/{t.handler}" if t.key is not None else f"{t.service}/{t.handler}"


def real_target(t: Target) -> str:
    return f"{t.service}/{t.key}/{t.handler}" if t.key is not None else f"{t.service}/{t.handler}"


def _traceparent(span: Span) -> str:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier["traceparent"]


def _parent(traceparent: str) -> otel_context.Context:
    return _PROPAGATOR.extract({"traceparent": traceparent})


@dataclass(slots=True)
class IngressTrace:
    ingress: Span
    start: Span
    traceparent: str  # of the start span, stored with the invocation


class Tracing:
    def __init__(self, exporter: SpanExporter) -> None:
        resource = Resource.create(
            {
                "service.name": "Perdure",
                "service.namespace": "Restate",
                "service.version": PERDURE_VERSION,
                "restate.compatible_version": VERSION,
            }
        )
        self._provider = TracerProvider(resource=resource)
        self._provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=EXPORT_DELAY_MS))
        self._tracer = self._provider.get_tracer("services")

    def shutdown(self) -> None:
        """Export what is buffered, then stop."""
        self._provider.shutdown()

    # ------------------------------------------------------------------ ingress

    def ingress_begin(
        self,
        headers: list[tuple[bytes, bytes]],
        target: Target,
        client: tuple[str, int] | None,
    ) -> IngressTrace:
        carrier = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in headers
            if k in (b"traceparent", b"tracestate")
        }
        name = span_target(target)
        attrs: dict[str, Any] = {
            "rpc.service": target.service,
            "rpc.method": target.handler,
            "restate.invocation.target": real_target(target),
        }
        if client is not None:
            attrs["client.socket.address"], attrs["client.socket.port"] = client[0], client[1]
        ingress = self._tracer.start_span(
            f"ingress {name}", context=_PROPAGATOR.extract(carrier), attributes=attrs
        )
        # As Restate 1.7.12 does, an ingress /send stays in the caller's trace too (the start span
        # under the ingress span, no link).
        start = self._tracer.start_span(
            f"invocation-start {name}",
            context=trace.set_span_in_context(ingress),
            attributes={"restate.invocation.target": real_target(target)},
        )
        return IngressTrace(ingress, start, _traceparent(start))

    def ingress_end(self, it: IngressTrace, invocation_id: str | None) -> None:
        if invocation_id is not None:
            it.ingress.set_attribute("restate.invocation.id", invocation_id)
            it.start.set_attribute("restate.invocation.id", invocation_id)
        it.start.end()
        it.ingress.end()

    # ------------------------------------------------------------------ invoker

    def attempt_begin(
        self, s: StartAttempt, address: str, protocol_version: int
    ) -> tuple[Span, list[tuple[str, str]]]:
        """The attempt's span, and the headers that carry its context to the service."""
        assert s.trace_parent is not None
        span = self._tracer.start_span(
            f"invocation-attempt {span_target(s.target)}",
            context=_parent(s.trace_parent),
            attributes={
                "rpc.system": "restate",
                "rpc.service": s.target.service,
                "rpc.method": s.target.handler,
                "restate.invocation.id": s.invocation_id,
                "restate.invocation.target": real_target(s.target),
                "restate.deployment.id": s.deployment_id,
                "restate.deployment.address": address,
                "restate.deployment.service_protocol_version": protocol_version,
            },
        )
        return span, [("traceparent", _traceparent(span))]

    def attempt_end(self, span: Span, status: str) -> None:
        if status == "completed":
            span.set_status(Status(StatusCode.OK))
        elif status == "failed":
            span.set_status(Status(StatusCode.ERROR, "transient failure"))
        span.end()

    # ------------------------------------------------------------------ processor

    def completed(self, e: Completed) -> None:
        assert e.trace_parent is not None
        attrs: dict[str, Any] = {
            "rpc.service": e.target.service,
            "rpc.method": e.target.handler,
            "restate.invocation.id": e.invocation_id,
            "restate.invocation.target": real_target(e.target),
            "restate.invocation.result": "failure" if e.failure is not None else "success",
        }
        if e.failure is not None:
            attrs["error.message"] = e.failure.message
            attrs["restate.invocation.error.code"] = str(e.failure.code)
        span = self._tracer.start_span(
            f"invocation-end {span_target(e.target)}", context=_parent(e.trace_parent), attributes=attrs
        )
        if e.failure is not None:
            span.set_status(Status(StatusCode.ERROR, e.failure.message))
        span.end()
