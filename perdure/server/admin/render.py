"""JSON shapes of the admin API (ServiceMetadata, HandlerMetadata, deployments) as Restate 1.7.12
renders them: same keys, same order, same optional keys, humantime durations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from perdure.protocol.discovery import InputRules, OutputRules
from perdure.server.registry import Deployment, HandlerInfo, Registry, ServiceInfo
from perdure.server.units import format_duration as humantime

SERVICE_TY = {"SERVICE": "Service", "VIRTUAL_OBJECT": "VirtualObject", "WORKFLOW": "Workflow"}
HANDLER_TY = {"EXCLUSIVE": "Exclusive", "SHARED": "Shared", "WORKFLOW": "Workflow"}
PROTOCOL_TYPE = {"BIDI_STREAM": "BidiStream", "REQUEST_RESPONSE": "RequestResponse"}
ON_MAX_ATTEMPTS = {"PAUSE": "Pause", "KILL": "Kill"}


def rfc3339(ms: int) -> str:
    """`2026-11-25T07:55:38.187000000Z` (nanosecond precision, as Restate prints it)."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}000000Z"


def _schema_description(schema: Any) -> str | None:
    if isinstance(schema, dict):
        if isinstance(schema.get("title"), str):
            return f"JSON '{schema['title']}'"
        if isinstance(schema.get("type"), str):
            return f"JSON {schema['type']}"
    return None


def input_description(rules: InputRules) -> str:
    if rules.content_type is None:
        return "<invalid rules>" if rules.required else "none"
    return _schema_description(rules.json_schema) or rules.content_type


def output_description(rules: OutputRules) -> str:
    if rules.content_type is None:
        return "none"
    described = _schema_description(rules.json_schema)
    if described is not None:
        return described
    return f"optional {rules.content_type}" if rules.set_content_type_if_empty else rules.content_type


def _sorted_keys(value: Any) -> Any:
    """Restate keeps JSON schemas in sorted maps; print them the same way."""
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def handler_json(h: HandlerInfo, *, request_response: bool = False) -> dict[str, Any]:
    """HandlerMetadata; on request-response deployments an inactivity timeout is reported as not
    applied (info RT0021) instead of shown."""
    m = h.manifest
    o = m.options
    info: list[dict[str, str]] = []
    d: dict[str, Any] = {"name": h.name}
    if h.ty is not None:
        d["ty"] = HANDLER_TY[h.ty]
    if o.documentation is not None:
        d["documentation"] = o.documentation
    if o.metadata:
        d["metadata"] = o.metadata
    for key, value in (
        ("idempotency_retention", o.idempotency_retention_ms),
        ("journal_retention", o.journal_retention_ms),
        ("inactivity_timeout", o.inactivity_timeout_ms),
        ("abort_timeout", o.abort_timeout_ms),
    ):
        if value is None:
            continue
        if key == "inactivity_timeout" and request_response:
            info.append(
                {
                    "code": "RT0021",
                    "message": f"The configured inactivity_timeout {humantime(value)} "
                    "will not be applied because the handler is exposed in Request/Response mode.",
                }
            )
            continue
        d[key] = humantime(value)
    if o.enable_lazy_state is not None:
        d["enable_lazy_state"] = o.enable_lazy_state
    d["public"] = h.public
    d["input_description"] = input_description(m.input)
    d["output_description"] = output_description(m.output)
    if m.input.content_type is not None and m.input.json_schema is not None:
        d["input_json_schema"] = _sorted_keys(m.input.json_schema)
    if m.output.content_type is not None and m.output.json_schema is not None:
        d["output_json_schema"] = _sorted_keys(m.output.json_schema)
    d["retry_policy"] = _handler_retry_policy(h)
    if info:
        d["info"] = info
    return d


def _handler_retry_policy(h: HandlerInfo) -> dict[str, Any]:
    o = h.manifest.options
    policy: dict[str, Any] = {}
    if o.retry_initial_interval_ms is not None:
        policy["initial_interval"] = humantime(o.retry_initial_interval_ms)
    if o.retry_exponentiation_factor is not None:
        policy["exponentiation_factor"] = o.retry_exponentiation_factor
    policy["max_attempts"] = o.retry_max_attempts
    if o.retry_max_interval_ms is not None:
        policy["max_interval"] = humantime(o.retry_max_interval_ms)
    if o.retry_on_max_attempts is not None:
        policy["on_max_attempts"] = ON_MAX_ATTEMPTS[o.retry_on_max_attempts]
    return policy


def service_json(s: ServiceInfo, *, request_response: bool = False) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": s.name,
        "ty": SERVICE_TY[s.ty],
        "handlers": [handler_json(h, request_response=request_response) for h in s.handlers.values()],
    }
    if s.documentation is not None:
        d["documentation"] = s.documentation
    if s.metadata:
        d["metadata"] = s.metadata
    d.update(
        deployment_id=s.deployment_id,
        revision=s.revision,
        public=s.public,
        idempotency_retention=humantime(s.idempotency_retention_ms),
    )
    if s.workflow_completion_retention_ms is not None:
        d["workflow_completion_retention"] = humantime(s.workflow_completion_retention_ms)
    d.update(
        journal_retention=humantime(s.journal_retention_ms),
        inactivity_timeout=humantime(s.inactivity_timeout_ms),
        abort_timeout=humantime(s.abort_timeout_ms),
        enable_lazy_state=s.enable_lazy_state,
        retry_policy={
            "initial_interval": humantime(s.retry_initial_interval_ms),
            "exponentiation_factor": s.retry_exponentiation_factor,
            "max_attempts": s.retry_max_attempts,
            "max_interval": humantime(s.retry_max_interval_ms),
            "on_max_attempts": ON_MAX_ATTEMPTS[s.retry_on_max_attempts],
        },
    )
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
    if d.metadata:
        out["metadata"] = d.metadata
    out.update(
        created_at=rfc3339(d.created_at_ms),
        min_protocol_version=d.min_protocol_version,
        max_protocol_version=d.max_protocol_version,
        sdk_version=d.sdk_version,
    )
    return out


def deployment_summary(d: Deployment) -> dict[str, Any]:
    out = _deployment_common(d)
    out["services"] = [{"name": name, "revision": rev} for name, rev in d.services.items()]
    return out


def deployment_detail(d: Deployment, registry: Registry) -> dict[str, Any]:
    out = _deployment_common(d)
    rr = d.protocol_mode == "REQUEST_RESPONSE"
    out["services"] = [service_json(s, request_response=rr) for s in registry.deployment_services(d.id)]
    return out


def registration_json(d: Deployment, services: list[ServiceInfo]) -> dict[str, Any]:
    return {
        "id": d.id,
        "services": [
            service_json(s, request_response=d.protocol_mode == "REQUEST_RESPONSE") for s in services
        ],
        "min_protocol_version": d.min_protocol_version,
        "max_protocol_version": d.max_protocol_version,
        "sdk_version": d.sdk_version,
    }
