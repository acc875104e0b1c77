"""Deployments and services with Restate's semantics: deployments are
immutable (a new URI exposing known services creates a new deployment and new
service revisions; invocations stay pinned to the deployment they began on),
re-registering the same URI changes nothing unless forced.

Everything lives in memory; every change is persisted as one JSON document
(`meta['schema']`) through a `MetadataStore`, durable before it is visible."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson

from perdure.protocol.discovery import HandlerManifest, Manifest, ServiceManifest
from perdure.protocol.ids import new_deployment_id

DAY_MS = 86_400_000
SCHEMA_KEY = "schema"


class MetadataStore(Protocol):
    async def get_meta(self, key: str) -> bytes | None: ...
    async def put_meta(self, key: str, value: bytes) -> None: ...


def _media_type(ct: str) -> str:
    return ct.split(";", 1)[0].strip().lower()


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    name: str
    ty: str | None  # "EXCLUSIVE" | "SHARED" | "WORKFLOW" | None for plain services
    input: dict[str, Any] | None
    output: dict[str, Any] | None
    public: bool = True
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def enable_lazy_state(self) -> bool | None:
        """Handler-level override of the service's setting (None: inherit)."""
        v = self.options.get("enableLazyState")
        return None if v is None else bool(v)

    @property
    def output_content_type(self) -> str | None:
        if self.output is None:
            return "application/json"
        ct = self.output.get("contentType")
        return ct if isinstance(ct, str) else None

    @property
    def set_content_type_if_empty(self) -> bool:
        return bool(self.output and self.output.get("setContentTypeIfEmpty"))

    def takes_no_input(self) -> bool:
        return self.input is not None and "contentType" not in self.input

    def validate_input(self, content_type: str | None, body: bytes) -> str | None:
        """None if the request is acceptable, else the ingress error (Restate's wording)."""
        if self.takes_no_input():
            if body or content_type:
                return (
                    "Expected body and content-type to be empty, "
                    f"but wasn't with content-type '{_rust_option(content_type)}'"
                )
            return None
        rules = self.input or {}
        expected = rules.get("contentType", "*/*")
        if not body:
            if rules.get("required"):
                return "Expected body, but it was empty"
            return None
        if content_type is None:
            return "Empty content-type"
        if not _content_type_matches(expected, content_type):
            return f"Content-type '{content_type}' does not match '{expected}'"
        return None


def _rust_option(value: str | None) -> str:
    return "None" if value is None else f'Some("{value}")'


def _content_type_matches(expected: str, actual: str) -> bool:
    exp, act = _media_type(expected), _media_type(actual)
    if exp in ("*/*", ""):
        return True
    if exp.endswith("/*"):
        return act.startswith(exp[:-1])
    return exp == act


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    name: str
    ty: str  # "SERVICE" | "VIRTUAL_OBJECT" | "WORKFLOW"
    handlers: dict[str, HandlerInfo]
    deployment_id: str
    revision: int
    public: bool = True
    documentation: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    idempotency_retention_ms: int = DAY_MS
    workflow_completion_retention_ms: int | None = None
    journal_retention_ms: int = DAY_MS
    inactivity_timeout_ms: int = 60_000
    abort_timeout_ms: int = 600_000
    enable_lazy_state: bool = False
    retry_initial_interval_ms: int = 500
    retry_exponentiation_factor: float = 2.0
    retry_max_attempts: int = 70
    retry_max_interval_ms: int = 60_000
    retry_on_max_attempts: str = "PAUSE"


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    uri: str
    protocol_mode: str  # "BIDI_STREAM" | "REQUEST_RESPONSE"
    http_version: str
    min_protocol_version: int
    max_protocol_version: int
    sdk_version: str | None
    additional_headers: dict[str, str]
    created_at_ms: int
    services: dict[str, ServiceInfo]
    manifest_json: bytes = b""  # what discovery returned, to detect changes


def normalize_uri(uri: str) -> str:
    return uri if uri.endswith("/") else uri + "/"


class Registry:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._deployments: dict[str, Deployment] = {}
        self._latest: dict[str, ServiceInfo] = {}

    @classmethod
    async def load(cls, store: MetadataStore) -> Registry:
        reg = cls(store)
        raw = await store.get_meta(SCHEMA_KEY)
        if raw is not None:
            for d in orjson.loads(raw)["deployments"]:
                dep = _deployment_from_json(d)
                reg._deployments[dep.id] = dep
            reg._recompute_latest()
        return reg

    # ------------------------------------------------------------------ lookups

    def service(self, name: str) -> ServiceInfo | None:
        return self._latest.get(name)

    def deployment(self, deployment_id: str) -> Deployment | None:
        return self._deployments.get(deployment_id)

    def services(self) -> list[ServiceInfo]:
        return sorted(self._latest.values(), key=lambda s: s.name)

    def deployments(self) -> list[Deployment]:
        return sorted(self._deployments.values(), key=lambda d: d.created_at_ms)

    def by_uri(self, uri: str) -> Deployment | None:
        uri = normalize_uri(uri)
        return next((d for d in self._deployments.values() if d.uri == uri), None)

    # ------------------------------------------------------------------ changes

    async def register(
        self,
        uri: str,
        manifest: Manifest,
        manifest_json: bytes,
        *,
        sdk_version: str | None,
        additional_headers: dict[str, str],
        http_version: str,
        force: bool,
        dry_run: bool,
    ) -> tuple[bool, Deployment]:
        """Register a discovered endpoint. Returns (created, deployment)."""
        uri = normalize_uri(uri)
        existing = self.by_uri(uri)
        if existing is not None and not force:
            return False, existing
        dep_id = existing.id if existing is not None else new_deployment_id()
        services = {}
        for sm in manifest.services:
            prev = self._latest.get(sm.name)
            revision = (prev.revision + 1) if prev is not None else 1
            if prev is not None and existing is not None and prev.deployment_id == dep_id and not force:
                revision = prev.revision
            services[sm.name] = _service_info(sm, dep_id, revision, manifest.protocol_mode)
        dep = Deployment(
            id=dep_id,
            uri=uri,
            protocol_mode=manifest.protocol_mode,
            http_version=http_version,
            min_protocol_version=manifest.min_protocol_version,
            max_protocol_version=manifest.max_protocol_version,
            sdk_version=sdk_version,
            additional_headers=dict(additional_headers),
            created_at_ms=existing.created_at_ms if existing else int(time.time() * 1000),
            services=services,
            manifest_json=manifest_json,
        )
        if dry_run:
            return existing is None, dep
        self._deployments[dep_id] = dep
        self._recompute_latest()
        await self._persist()
        return existing is None, dep

    async def remove(self, deployment_id: str) -> bool:
        if self._deployments.pop(deployment_id, None) is None:
            return False
        self._recompute_latest()
        await self._persist()
        return True

    async def modify_service(self, name: str, changes: dict[str, Any]) -> ServiceInfo | None:
        svc = self._latest.get(name)
        if svc is None:
            return None
        new = replace(svc, **changes)
        dep = self._deployments[svc.deployment_id]
        self._deployments[dep.id] = replace(dep, services={**dep.services, name: new})
        self._recompute_latest()
        await self._persist()
        return new

    def _recompute_latest(self) -> None:
        latest: dict[str, ServiceInfo] = {}
        for dep in sorted(self._deployments.values(), key=lambda d: d.created_at_ms):
            for name, svc in dep.services.items():
                cur = latest.get(name)
                if cur is None or svc.revision >= cur.revision:
                    latest[name] = svc
        self._latest = latest

    async def _persist(self) -> None:
        doc = {"deployments": [_deployment_to_json(d) for d in self._deployments.values()]}
        await self._store.put_meta(SCHEMA_KEY, orjson.dumps(doc))


def _service_info(sm: ServiceManifest, dep_id: str, revision: int, mode: str) -> ServiceInfo:
    o = sm.options
    handlers = {
        h.name: HandlerInfo(
            h.name,
            h.ty,
            h.input,
            h.output,
            not h.options.get("ingressPrivate", False),
            h.documentation,
            h.metadata,
            h.options,
        )
        for h in sm.handlers
    }
    default_inactivity = 0 if mode == "REQUEST_RESPONSE" else 60_000
    wf_handler: HandlerManifest | None = next((h for h in sm.handlers if h.ty == "WORKFLOW"), None)
    wf_retention = None
    if sm.ty == "WORKFLOW":
        wf_retention = o.get("workflowCompletionRetention")
        if wf_retention is None and wf_handler is not None:
            wf_retention = wf_handler.options.get("workflowCompletionRetention")
        wf_retention = DAY_MS if wf_retention is None else int(wf_retention)
    return ServiceInfo(
        name=sm.name,
        ty=sm.ty,
        handlers=handlers,
        deployment_id=dep_id,
        revision=revision,
        public=not o.get("ingressPrivate", False),
        documentation=sm.documentation,
        metadata=sm.metadata,
        idempotency_retention_ms=int(o.get("idempotencyRetention", DAY_MS)),
        workflow_completion_retention_ms=wf_retention,
        journal_retention_ms=int(o.get("journalRetention", DAY_MS)),
        inactivity_timeout_ms=int(o.get("inactivityTimeout", default_inactivity)),
        abort_timeout_ms=int(o.get("abortTimeout", 600_000)),
        enable_lazy_state=bool(o.get("enableLazyState", False)),
        retry_initial_interval_ms=int(o.get("retryPolicyInitialInterval", 500)),
        retry_exponentiation_factor=float(o.get("retryPolicyExponentiationFactor", 2.0)),
        retry_max_attempts=int(o.get("retryPolicyMaxAttempts", 70)),
        retry_max_interval_ms=int(o.get("retryPolicyMaxInterval", 60_000)),
        retry_on_max_attempts=str(o.get("retryPolicyOnMaxAttempts", "PAUSE")),
    )


def _deployment_to_json(d: Deployment) -> dict[str, Any]:
    return {
        "id": d.id,
        "uri": d.uri,
        "protocol_mode": d.protocol_mode,
        "http_version": d.http_version,
        "min": d.min_protocol_version,
        "max": d.max_protocol_version,
        "sdk_version": d.sdk_version,
        "headers": d.additional_headers,
        "created_at_ms": d.created_at_ms,
        "manifest": d.manifest_json.decode(),
        "services": [_service_to_json(s) for s in d.services.values()],
    }


def _service_to_json(s: ServiceInfo) -> dict[str, Any]:
    d = {k: getattr(s, k) for k in ServiceInfo.__dataclass_fields__ if k != "handlers"}
    d["handlers"] = [
        {k: getattr(h, k) for k in HandlerInfo.__dataclass_fields__} for h in s.handlers.values()
    ]
    return d


def _deployment_from_json(d: dict[str, Any]) -> Deployment:
    services = {}
    for s in d["services"]:
        handlers = {h["name"]: HandlerInfo(**h) for h in s.pop("handlers")}
        services[s["name"]] = ServiceInfo(handlers=handlers, **s)
    return Deployment(
        id=d["id"],
        uri=d["uri"],
        protocol_mode=d["protocol_mode"],
        http_version=d["http_version"],
        min_protocol_version=d["min"],
        max_protocol_version=d["max"],
        sdk_version=d["sdk_version"],
        additional_headers=d["headers"],
        created_at_ms=d["created_at_ms"],
        services=services,
        manifest_json=d["manifest"].encode(),
    )
