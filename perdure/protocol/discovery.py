"""Endpoint manifest (the `GET /discover` answer): parsing and validation, sans-IO.

Accepts manifest versions v1..v4 (one schema: later versions only add optional fields), checks
what Restate 1.7.12 checks (service-protocol.md section 7), and reports failures in Restate's
words so the admin API can return the same messages. Service- and handler-level objects reject
unknown fields, as Restate's decoder does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

MANIFEST_VERSIONS = (1, 2, 3, 4)
PROTOCOL_VERSION_MIN = 5
PROTOCOL_VERSION_MAX = 7
PROTOCOL_MODES = ("BIDI_STREAM", "REQUEST_RESPONSE")
SERVICE_TYPES = ("VIRTUAL_OBJECT", "SERVICE", "WORKFLOW")
HANDLER_TYPES = ("WORKFLOW", "EXCLUSIVE", "SHARED")
ON_MAX_ATTEMPTS = ("PAUSE", "KILL")

SERVICE_NAME_PATTERN = r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$"
HANDLER_NAME_PATTERN = r"^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9_]*$"
_SERVICE_NAME = re.compile(SERVICE_NAME_PATTERN)
_HANDLER_NAME = re.compile(HANDLER_NAME_PATTERN)


def manifest_content_type(version: int) -> str:
    return f"application/vnd.restate.endpointmanifest.v{version}+json"


ACCEPT_HEADER = ", ".join(manifest_content_type(v) for v in MANIFEST_VERSIONS)
MANIFEST_ACCEPT = ACCEPT_HEADER
_VERSION_OF = {manifest_content_type(v): v for v in MANIFEST_VERSIONS}

_OPTION_FIELDS = (
    "abortTimeout",
    "documentation",
    "enableLazyState",
    "idempotencyRetention",
    "inactivityTimeout",
    "ingressPrivate",
    "journalRetention",
    "metadata",
    "retryPolicyExponentiationFactor",
    "retryPolicyInitialInterval",
    "retryPolicyMaxAttempts",
    "retryPolicyMaxInterval",
    "retryPolicyOnMaxAttempts",
)
_TOP_FIELDS = ("lambdaCompression", "maxProtocolVersion", "minProtocolVersion", "protocolMode", "services")
_SERVICE_FIELDS = tuple(sorted((*_OPTION_FIELDS, "handlers", "name", "ty")))
_HANDLER_FIELDS = tuple(
    sorted((*_OPTION_FIELDS, "input", "name", "output", "ty", "workflowCompletionRetention"))
)


class ManifestError(ValueError):
    """The manifest is unusable. `decode` errors are shape errors (Restate phrases them as a
    response that 'cannot be decoded'); others carry a Restate error code (META0012/META0013)
    or, with `status` 400, a registration rule the manifest breaks."""

    def __init__(
        self, message: str, *, code: str | None = None, decode: bool = False, status: int = 500
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.decode = decode
        self.status = status


def _decode_error(message: str) -> ManifestError:
    return ManifestError(message, decode=True)


@dataclass(frozen=True, slots=True)
class InputRules:
    """What a handler accepts. `content_type` None means it takes no input at all."""

    content_type: str | None = "*/*"
    required: bool = False
    json_schema: Any = None


@dataclass(frozen=True, slots=True)
class OutputRules:
    """What a handler returns. `content_type` None means it returns nothing."""

    content_type: str | None = "application/json"
    set_content_type_if_empty: bool = False
    json_schema: Any = None


@dataclass(frozen=True, slots=True)
class Options:
    """Service- or handler-level options of manifest v3/v4 (ms integers), all optional."""

    documentation: str | None = None
    metadata: dict[str, str] | None = None
    ingress_private: bool | None = None
    journal_retention_ms: int | None = None
    idempotency_retention_ms: int | None = None
    workflow_completion_retention_ms: int | None = None
    inactivity_timeout_ms: int | None = None
    abort_timeout_ms: int | None = None
    enable_lazy_state: bool | None = None
    retry_initial_interval_ms: int | None = None
    retry_max_interval_ms: int | None = None
    retry_max_attempts: int | None = None
    retry_exponentiation_factor: float | None = None
    retry_on_max_attempts: str | None = None


@dataclass(frozen=True, slots=True)
class HandlerManifest:
    name: str
    ty: str | None  # EXCLUSIVE | SHARED | WORKFLOW; None for plain services
    input: InputRules = InputRules()
    output: OutputRules = OutputRules()
    options: Options = Options()
    explicit_ty: bool = False


@dataclass(frozen=True, slots=True)
class ServiceManifest:
    name: str
    ty: str  # SERVICE | VIRTUAL_OBJECT | WORKFLOW
    handlers: tuple[HandlerManifest, ...]
    options: Options = Options()

    @property
    def documentation(self) -> str | None:
        return self.options.documentation

    @property
    def metadata(self) -> dict[str, str] | None:
        return self.options.metadata


@dataclass(frozen=True, slots=True)
class Manifest:
    protocol_mode: str
    min_protocol_version: int
    max_protocol_version: int
    services: tuple[ServiceManifest, ...]
    lambda_compression: str | None = None
    version: int = 4
    raw: dict[str, Any] = field(default_factory=dict, compare=False)


def manifest_version_of(content_type: str | None) -> int | None:
    """Manifest version named by a response content type, None if not one we accept."""
    if content_type is None:
        return None
    return _VERSION_OF.get(content_type.split(";", 1)[0].strip().lower())


def parse_manifest(body: bytes | str, version: int = 4) -> Manifest:
    """Decode and validate a manifest; raises ManifestError."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise _decode_error(str(e)) from None
    return manifest_from_json(doc, version)


def manifest_from_json(doc: Any, version: int = 4) -> Manifest:
    top = _obj(doc, "manifest")
    _no_unknown(top, _TOP_FIELDS)
    services_raw = top.get("services")
    if not isinstance(services_raw, list):
        raise _decode_error(
            "missing field `services`"
            if services_raw is None
            else "invalid type for `services`, expected a sequence"
        )
    min_v = _int(top, "minProtocolVersion", required=True)
    max_v = _int(top, "maxProtocolVersion", required=True)
    mode = top.get("protocolMode")
    if mode is not None and mode not in PROTOCOL_MODES:
        raise _decode_error(_variant_error(mode, PROTOCOL_MODES))
    compression = top.get("lambdaCompression")
    if compression is not None and compression != "zstd":
        raise _decode_error(_variant_error(compression, ("zstd",)))
    services: dict[str, ServiceManifest] = {}
    for raw in services_raw:
        service = _service(raw)
        services[service.name] = service  # a repeated name replaces the earlier one, as in Restate
    assert min_v is not None and max_v is not None
    if mode is None:
        raise ManifestError("received a bad response from the SDK: missing protocol mode", code="META0013")
    if max_v < PROTOCOL_VERSION_MIN or min_v > PROTOCOL_VERSION_MAX or min_v > max_v:
        raise ManifestError(
            f"unsupported service protocol versions: [{min_v}, {max_v}]. Supported versions by this "
            f"runtime are [{PROTOCOL_VERSION_MIN}, {PROTOCOL_VERSION_MAX}]. Please upgrade the SDK and "
            "try registering again.",
            code="META0012",
        )
    manifest = Manifest(mode, min_v, max_v, tuple(services.values()), compression, version, top)
    for service in manifest.services:
        _check_visibility(service)
    return manifest


def _service(raw: Any) -> ServiceManifest:
    obj = _obj(raw, "service")
    _no_unknown(obj, _SERVICE_FIELDS)
    name = _name(obj, _SERVICE_NAME, SERVICE_NAME_PATTERN)
    ty = obj.get("ty")
    if ty not in SERVICE_TYPES:
        raise _decode_error("missing field `ty`" if ty is None else _variant_error(ty, SERVICE_TYPES))
    handlers_raw = obj.get("handlers")
    if not isinstance(handlers_raw, list):
        raise _decode_error("missing field `handlers`")
    handlers: dict[str, HandlerManifest] = {}
    for h in handlers_raw:
        handler = _handler(h, ty)
        handlers[handler.name] = handler
    return ServiceManifest(name, ty, tuple(handlers.values()), _options(obj))


def _handler(raw: Any, service_ty: str) -> HandlerManifest:
    obj = _obj(raw, "handler")
    _no_unknown(obj, _HANDLER_FIELDS)
    name = _name(obj, _HANDLER_NAME, HANDLER_NAME_PATTERN)
    ty = obj.get("ty")
    if ty is not None and ty not in HANDLER_TYPES:
        raise _decode_error(_variant_error(ty, HANDLER_TYPES))
    explicit = ty is not None
    if service_ty == "VIRTUAL_OBJECT" and ty == "WORKFLOW":
        raise ManifestError(
            "invalid combination of service type and handler type '(VirtualObject, Some(Workflow))'",
            status=400,
        )
    if service_ty == "SERVICE":
        ty = None  # handler types mean nothing on a plain service; Restate drops them
    elif ty is None:
        ty = "EXCLUSIVE" if service_ty == "VIRTUAL_OBJECT" else "SHARED"
    return HandlerManifest(
        name, ty, _input(obj.get("input")), _output(obj.get("output")), _options(obj), explicit
    )


def _input(raw: Any) -> InputRules:
    if raw is None:
        return InputRules()
    obj = _obj(raw, "input")
    content_type = _str(obj, "contentType")
    required = bool(_bool(obj, "required") or False)
    if content_type is None and not required:
        return InputRules(None, False, None)  # `{}`: the handler takes no input
    return InputRules(content_type or "*/*", required, obj.get("jsonSchema"))


def _output(raw: Any) -> OutputRules:
    if raw is None:
        return OutputRules()
    obj = _obj(raw, "output")
    return OutputRules(
        _str(obj, "contentType"), bool(_bool(obj, "setContentTypeIfEmpty") or False), obj.get("jsonSchema")
    )


def _options(obj: dict[str, Any]) -> Options:
    on_max = _str(obj, "retryPolicyOnMaxAttempts")
    if on_max is not None and on_max not in ON_MAX_ATTEMPTS:
        raise _decode_error(_variant_error(on_max, ON_MAX_ATTEMPTS))
    metadata = obj.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise _decode_error("invalid type for `metadata`, expected a map of strings")
    factor = obj.get("retryPolicyExponentiationFactor")
    if factor is not None and (isinstance(factor, bool) or not isinstance(factor, int | float)):
        raise _decode_error("invalid type for `retryPolicyExponentiationFactor`, expected f64")
    return Options(
        documentation=_str(obj, "documentation"),
        metadata=metadata,
        ingress_private=_bool(obj, "ingressPrivate"),
        journal_retention_ms=_int(obj, "journalRetention"),
        idempotency_retention_ms=_int(obj, "idempotencyRetention"),
        workflow_completion_retention_ms=_int(obj, "workflowCompletionRetention"),
        inactivity_timeout_ms=_int(obj, "inactivityTimeout"),
        abort_timeout_ms=_int(obj, "abortTimeout"),
        enable_lazy_state=_bool(obj, "enableLazyState"),
        retry_initial_interval_ms=_int(obj, "retryPolicyInitialInterval"),
        retry_max_interval_ms=_int(obj, "retryPolicyMaxInterval"),
        retry_max_attempts=_int(obj, "retryPolicyMaxAttempts"),
        retry_exponentiation_factor=None if factor is None else float(factor),
        retry_on_max_attempts=on_max,
    )


def _check_visibility(service: ServiceManifest) -> None:
    if not service.options.ingress_private:
        return
    for handler in service.handlers:
        if handler.options.ingress_private is False:
            raise ManifestError(
                f"The service {service.name} is private, but the {handler.name} is explicitly set as "
                "public. This is not supported. Please make the service public, and hide the "
                "individual handlers",
                status=400,
            )


# --- small typed readers; each raises a decode error naming the field ---


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _decode_error(f"invalid type for {what}, expected a map")
    return value


def _no_unknown(obj: dict[str, Any], allowed: tuple[str, ...]) -> None:
    for key in obj:
        if key not in allowed:
            expected = ", ".join(f"`{f}`" for f in allowed)
            raise _decode_error(f"unknown field `{key}`, expected one of {expected}")


def _name(obj: dict[str, Any], regex: re.Pattern[str], pattern: str) -> str:
    name = obj.get("name")
    if not isinstance(name, str):
        raise _decode_error("missing field `name`")
    if not regex.match(name):
        raise _decode_error(f'doesn\'t match pattern "{pattern}"')
    return name


def _str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _decode_error(f"invalid type for `{key}`, expected a string")
    return value


def _bool(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, bool):
        raise _decode_error(f"invalid type for `{key}`, expected a boolean")
    return value


def _int(obj: dict[str, Any], key: str, *, required: bool = False) -> int | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _decode_error(f"missing field `{key}`")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _decode_error(f"invalid value for `{key}`, expected a non-negative integer")
    return value


def _variant_error(value: Any, variants: tuple[str, ...]) -> str:
    expected = ", ".join(f"`{v}`" for v in variants)
    return f"unknown variant `{value}`, expected one of {expected}"
