"""The endpoint manifest served on `GET /discover` (manifest v1..v4), and the
choice of manifest version from the `accept` header."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Literal

from perdure.sdk.handler import Handler, HandlerOptions, json_schema
from perdure.sdk.machine import PROTOCOL_VERSIONS
from perdure.sdk.service import _Definition

MANIFEST_VERSIONS = (4, 3, 2, 1)  # preferred first
MANIFEST_CONTENT_TYPE = "application/vnd.restate.endpointmanifest.v{}+json"
ProtocolMode = Literal["bidi", "request_response"]

_SERVICE_TY = {"service": "SERVICE", "object": "VIRTUAL_OBJECT", "workflow": "WORKFLOW"}
_HANDLER_TY = {"exclusive": "EXCLUSIVE", "shared": "SHARED", "workflow": "WORKFLOW"}


def negotiate_manifest_version(accept: str | None) -> int | None:
    """Highest manifest version the caller accepts; None when it accepts none of ours."""
    if not accept:
        return 2
    for version in MANIFEST_VERSIONS:
        if MANIFEST_CONTENT_TYPE.format(version) in accept:
            return version
    return None


def manifest(services: Iterable[_Definition], mode: ProtocolMode, version: int) -> dict[str, Any]:
    return {
        "protocolMode": "BIDI_STREAM" if mode == "bidi" else "REQUEST_RESPONSE",
        "minProtocolVersion": PROTOCOL_VERSIONS[0],
        "maxProtocolVersion": PROTOCOL_VERSIONS[-1],
        "services": [_service(s, version) for s in services],
    }


def _service(s: _Definition, version: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": s.name,
        "ty": _SERVICE_TY[s.service_tag.kind],
        "handlers": [_handler(h, version) for h in s.handlers.values()],
    }
    if version >= 2:
        if s.service_tag.description:
            out["documentation"] = s.service_tag.description
        if s.service_tag.metadata:
            out["metadata"] = s.service_tag.metadata
    out.update(_options(s.options, version))
    return out


def _handler(h: Handler, version: int) -> dict[str, Any]:
    io = h.handler_io
    out: dict[str, Any] = {"name": h.name}
    if h.kind is not None:
        out["ty"] = _HANDLER_TY[h.kind]
    if io.takes_input:
        schema = json_schema(io.input_hint) if io.input_hint is not None else True
        out["input"] = {"required": False, "contentType": io.accept, "jsonSchema": schema}
    else:
        out["input"] = {}
    if io.returns_output:
        out["output"] = {
            "contentType": io.content_type,
            "setContentTypeIfEmpty": False,
            "jsonSchema": json_schema(io.output_hint),
        }
    else:
        out["output"] = {"setContentTypeIfEmpty": False}
    if version >= 2:
        if h.description:
            out["documentation"] = h.description
        if h.options.metadata:
            out["metadata"] = h.options.metadata
    out.update(_options(h.options, version))
    return out


def _options(o: HandlerOptions, version: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if version < 3:
        return out
    durations: dict[str, timedelta | None] = {
        "inactivityTimeout": o.inactivity_timeout,
        "abortTimeout": o.abort_timeout,
        "journalRetention": o.journal_retention,
        "idempotencyRetention": o.idempotency_retention,
        "workflowCompletionRetention": o.workflow_retention,
    }
    for key, value in durations.items():
        if value is not None:
            out[key] = int(value.total_seconds() * 1000)
    if o.enable_lazy_state is not None:
        out["enableLazyState"] = o.enable_lazy_state
    if o.ingress_private is not None:
        out["ingressPrivate"] = o.ingress_private
    if version >= 4 and o.invocation_retry_policy is not None:
        out.update(o.invocation_retry_policy.manifest())
    return out
