"""The endpoint manifest (discovery), versions v1..v4: parsing and validation.
Sans-IO: JSON bytes in, a validated `Manifest` out."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import orjson

MANIFEST_ACCEPT = ", ".join(f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (1, 2, 3, 4))
MANIFEST_CONTENT_TYPES = frozenset(
    f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (1, 2, 3, 4)
)
SUPPORTED_PROTOCOL_MIN = 5
SUPPORTED_PROTOCOL_MAX = 7
SERVICE_NAME = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$")
HANDLER_NAME = re.compile(r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$")
SERVICE_TYPES = ("SERVICE", "VIRTUAL_OBJECT", "WORKFLOW")
HANDLER_TYPES = ("EXCLUSIVE", "SHARED", "WORKFLOW")
OPTION_KEYS = (
    "inactivityTimeout",
    "abortTimeout",
    "journalRetention",
    "idempotencyRetention",
    "workflowCompletionRetention",
    "enableLazyState",
    "ingressPrivate",
    "retryPolicyInitialInterval",
    "retryPolicyMaxInterval",
    "retryPolicyMaxAttempts",
    "retryPolicyExponentiationFactor",
    "retryPolicyOnMaxAttempts",
)


class ManifestError(ValueError):
    """The service endpoint's manifest is not one we can register."""


@dataclass(frozen=True, slots=True)
class HandlerManifest:
    name: str
    ty: str | None
    input: dict[str, Any] | None  # None: absent (any input); {}: no input
    output: dict[str, Any] | None
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ServiceManifest:
    name: str
    ty: str
    handlers: tuple[HandlerManifest, ...]
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    protocol_mode: str
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[ServiceManifest, ...]


def parse_manifest(data: bytes) -> Manifest:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ManifestError(f"the manifest is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ManifestError("the manifest must be a JSON object")
    mode = doc.get("protocolMode")
    if mode is None:
        raise ManifestError("missing protocol mode in the manifest")
    if mode not in ("BIDI_STREAM", "REQUEST_RESPONSE"):
        raise ManifestError(f"unknown protocol mode '{mode}'")
    lo, hi = doc.get("minProtocolVersion"), doc.get("maxProtocolVersion")
    if not isinstance(lo, int) or not isinstance(hi, int):
        raise ManifestError("minProtocolVersion and maxProtocolVersion are required integers")
    if hi < SUPPORTED_PROTOCOL_MIN or lo > SUPPORTED_PROTOCOL_MAX or lo > hi:
        raise ManifestError(
            f"the service supports protocol versions [{lo}, {hi}], which does not intersect the "
            f"server's [{SUPPORTED_PROTOCOL_MIN}, {SUPPORTED_PROTOCOL_MAX}]"
        )
    services = doc.get("services")
    if not isinstance(services, list):
        raise ManifestError("the manifest has no services list")
    return Manifest(mode, lo, hi, tuple(_service(s) for s in services))


def _options(d: dict[str, Any]) -> dict[str, Any]:
    return {k: d[k] for k in OPTION_KEYS if k in d and d[k] is not None}


def _service(s: Any) -> ServiceManifest:
    if not isinstance(s, dict) or not isinstance(s.get("name"), str):
        raise ManifestError("every service needs a name")
    name = s["name"]
    if not SERVICE_NAME.match(name):
        raise ManifestError(f"invalid service name '{name}'")
    ty = s.get("ty")
    if ty not in SERVICE_TYPES:
        raise ManifestError(f"service '{name}' has an unknown type '{ty}'")
    handlers = s.get("handlers")
    if not isinstance(handlers, list):
        raise ManifestError(f"service '{name}' has no handlers list")
    return ServiceManifest(
        name,
        ty,
        tuple(_handler(name, ty, h) for h in handlers),
        s.get("documentation"),
        dict(s.get("metadata") or {}),
        _options(s),
    )


def _handler(service: str, service_ty: str, h: Any) -> HandlerManifest:
    if not isinstance(h, dict) or not isinstance(h.get("name"), str):
        raise ManifestError(f"every handler of '{service}' needs a name")
    name = h["name"]
    if not HANDLER_NAME.match(name):
        raise ManifestError(f"invalid handler name '{service}/{name}'")
    ty = h.get("ty")
    if ty is not None and ty not in HANDLER_TYPES:
        raise ManifestError(f"handler '{service}/{name}' has an unknown type '{ty}'")
    if service_ty == "SERVICE" and ty is not None:
        raise ManifestError(f"handler '{service}/{name}' of a plain service cannot have a type")
    return HandlerManifest(
        name,
        ty,
        h.get("input"),
        h.get("output"),
        h.get("documentation"),
        dict(h.get("metadata") or {}),
        _options(h),
    )
