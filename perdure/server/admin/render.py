"""JSON shapes of the admin API (ServiceMetadata, HandlerMetadata,
deployments), as Restate 1.7.12 renders them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from perdure.server.registry import Deployment, HandlerInfo, Registry, ServiceInfo

SERVICE_TY = {"SERVICE": "Service", "VIRTUAL_OBJECT": "VirtualObject", "WORKFLOW": "Workflow"}
HANDLER_TY = {"EXCLUSIVE": "Exclusive", "SHARED": "Shared", "WORKFLOW": "Workflow"}
PROTOCOL_TYPE = {"BIDI_STREAM": "BidiStream", "REQUEST_RESPONSE": "RequestResponse"}


def humantime(ms: int) -> str:
    """`1d`, `500ms`, `1h 30m` — the duration format of Restate's admin API."""
    if ms <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        n, ms = divmod(ms, size)
        if n:
            parts.append(f"{n}{unit}")
    return " ".join(parts)


def rfc3339(ms: int) -> str:
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000000Z"


def _describe(rules: dict[str, Any] | None, default: str) -> str:
    if rules is None:
        return default
    ct = rules.get("contentType")
    if ct is None:
        return "none"
    schema = rules.get("jsonSchema")
    if ct == "application/json" and isinstance(schema, dict) and isinstance(schema.get("type"), str):
        return f"JSON {schema['type']}"
    return str(ct)


def handler_json(h: HandlerInfo, svc: ServiceInfo) -> dict[str, Any]:
    d: dict[str, Any] = {"name": h.name}
    if svc.ty != "SERVICE":
        d["ty"] = HANDLER_TY.get(h.ty or ("WORKFLOW" if svc.ty == "WORKFLOW" else "EXCLUSIVE"))
    if h.documentation:
        d["documentation"] = h.documentation
    if h.metadata:
        d["metadata"] = h.metadata
    d["public"] = h.public
    d["input_description"] = _describe(h.input, 'one of ["none", "value of content-type */*"]')
    d["output_description"] = _describe(h.output, "value of content-type 'application/json'")
    if h.input and "jsonSchema" in h.input:
        d["input_json_schema"] = h.input["jsonSchema"]
    if h.output and "jsonSchema" in h.output:
        d["output_json_schema"] = h.output["jsonSchema"]
    d["retry_policy"] = {"max_attempts": h.options.get("retryPolicyMaxAttempts")}
    return d


def service_json(s: ServiceInfo, dep: Deployment | None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": s.name,
        "handlers": [handler_json(h, s) for h in s.handlers.values()],
        "ty": SERVICE_TY[s.ty],
        "deployment_id": s.deployment_id,
        "revision": s.revision,
        "public": s.public,
        "idempotency_retention": humantime(s.idempotency_retention_ms),
    }
    if s.workflow_completion_retention_ms is not None:
        d["workflow_completion_retention"] = humantime(s.workflow_completion_retention_ms)
    d.update(
        {
            "journal_retention": humantime(s.journal_retention_ms),
            "inactivity_timeout": humantime(s.inactivity_timeout_ms),
            "abort_timeout": humantime(s.abort_timeout_ms),
            "enable_lazy_state": s.enable_lazy_state,
            "retry_policy": {
                "initial_interval": humantime(s.retry_initial_interval_ms),
                "exponentiation_factor": s.retry_exponentiation_factor,
                "max_attempts": s.retry_max_attempts,
                "max_interval": humantime(s.retry_max_interval_ms),
                "on_max_attempts": s.retry_on_max_attempts.capitalize(),
            },
        }
    )
    if s.documentation:
        d["documentation"] = s.documentation
    if s.metadata:
        d["metadata"] = s.metadata
    return d


def _deployment_common(d: Deployment) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "uri": d.uri,
        "protocol_type": PROTOCOL_TYPE[d.protocol_mode],
        "http_version": d.http_version,
    }
    if d.additional_headers:
        out["additional_headers"] = d.additional_headers
    out.update(
        {
            "created_at": rfc3339(d.created_at_ms),
            "min_protocol_version": d.min_protocol_version,
            "max_protocol_version": d.max_protocol_version,
            "sdk_version": d.sdk_version,
        }
    )
    return out


def deployment_summary(d: Deployment, registry: Registry) -> dict[str, Any]:
    out = _deployment_common(d)
    out["services"] = [{"name": s.name, "revision": s.revision} for s in d.services.values()]
    return out


def deployment_detail(d: Deployment, registry: Registry) -> dict[str, Any]:
    out = _deployment_common(d)
    out["services"] = [service_json(s, d) for s in d.services.values()]
    return out
