"""The schema registry: deployments and the services they expose, with Restate's semantics.

Deployments are immutable snapshots of a manifest at a URI. A service's *latest* revision is the
one with the highest revision number among the deployments exposing it; older deployments stay
for invocations pinned to them. Everything lives in memory for sync lookups on the hot path and
is persisted as one JSON document (`schema`) through a `MetadataStore` on every change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from perdure.protocol.discovery import HandlerManifest, Manifest, ServiceManifest, manifest_from_json
from perdure.protocol.ids import new_deployment_id

SCHEMA_KEY = "schema"
SCHEMA_FORMAT = 1

DAY_MS = 86_400_000
DEFAULT_IDEMPOTENCY_RETENTION_MS = DAY_MS
DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS = DAY_MS
DEFAULT_JOURNAL_RETENTION_MS = DAY_MS
DEFAULT_INACTIVITY_TIMEOUT_MS = 60_000
DEFAULT_ABORT_TIMEOUT_MS = 600_000
DEFAULT_RETRY_INITIAL_INTERVAL_MS = 500
DEFAULT_RETRY_EXPONENTIATION_FACTOR = 2.0
DEFAULT_RETRY_MAX_ATTEMPTS = 70
DEFAULT_RETRY_MAX_INTERVAL_MS = 60_000
DEFAULT_RETRY_ON_MAX_ATTEMPTS = "PAUSE"


@dataclass(frozen=True, slots=True)
class ServiceDefaults:
    """Server-wide values a service or handler gets when neither its manifest nor a PATCH set
    them (Restate's `default-*` and `worker.invoker` settings; Restate 1.7.12's defaults)."""

    idempotency_retention_ms: int = DEFAULT_IDEMPOTENCY_RETENTION_MS
    workflow_completion_retention_ms: int = DEFAULT_WORKFLOW_COMPLETION_RETENTION_MS
    journal_retention_ms: int = DEFAULT_JOURNAL_RETENTION_MS
    inactivity_timeout_ms: int = DEFAULT_INACTIVITY_TIMEOUT_MS
    abort_timeout_ms: int = DEFAULT_ABORT_TIMEOUT_MS
    retry_initial_interval_ms: int = DEFAULT_RETRY_INITIAL_INTERVAL_MS
    retry_exponentiation_factor: float = DEFAULT_RETRY_EXPONENTIATION_FACTOR
    retry_max_attempts: int = DEFAULT_RETRY_MAX_ATTEMPTS
    retry_max_interval_ms: int = DEFAULT_RETRY_MAX_INTERVAL_MS
    retry_on_max_attempts: str = DEFAULT_RETRY_ON_MAX_ATTEMPTS  # "PAUSE" | "KILL"


# Service fields the admin API may PATCH, with the override key each one sets.
PATCHABLE = (
    "public",
    "idempotency_retention_ms",
    "workflow_completion_retention_ms",
    "journal_retention_ms",
    "inactivity_timeout_ms",
    "abort_timeout_ms",
)


class MetadataStore(Protocol):
    async def get_meta(self, key: str) -> bytes | None: ...
    async def put_meta(self, key: str, value: bytes) -> None: ...


class RegistryError(Exception):
    """A registry operation was refused; `status` and `code` map to the admin API response."""

    def __init__(self, message: str, status: int, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


@dataclass(frozen=True, slots=True)
class Deployment:
    id: str
    uri: str
    protocol_mode: str  # "BIDI_STREAM" | "REQUEST_RESPONSE"
    http_version: str  # "HTTP/2.0" | "HTTP/1.1"
    min_protocol_version: int
    max_protocol_version: int
    sdk_version: str | None
    additional_headers: dict[str, str]
    created_at_ms: int
    services: dict[str, int]  # service name -> revision
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HandlerInfo:
    name: str
    ty: str | None  # "EXCLUSIVE" | "SHARED" | "WORKFLOW"; None for plain services
    public: bool
    input_content_type: str | None  # None: the handler takes no input
    input_required: bool
    output_content_type: str | None
    set_content_type_if_empty: bool
    # Effective values (handler option, else service option, else default).
    idempotency_retention_ms: int
    workflow_completion_retention_ms: int | None
    journal_retention_ms: int
    inactivity_timeout_ms: int
    abort_timeout_ms: int
    enable_lazy_state: bool
    retry_initial_interval_ms: int
    retry_exponentiation_factor: float
    retry_max_attempts: int
    retry_max_interval_ms: int
    retry_on_max_attempts: str
    manifest: HandlerManifest = field(compare=False, repr=False)

    def validate_input(self, content_type: str | None, body: bytes) -> str | None:
        """None when the ingress may pass this request on, else the reason, worded as Restate's
        ingress does after its `input validation error: ` prefix."""
        rule = self.input_content_type
        if rule is None:
            if body or content_type:
                shown = "None" if content_type is None else f'Some("{content_type}")'
                return f"Expected body and content-type to be empty, but wasn't with content-type '{shown}'"
            return None
        if content_type is not None and not content_type_matches(rule, content_type):
            return f"Content-type '{content_type}' does not match '{rule}'"
        if not body:
            if self.input_required:
                return f"Expected body with content-type '{rule}', but was empty"
            # No body and no content-type: the handler gets no input. A content-type
            # announcing a body that is not there is refused, as Restate does.
            return None if content_type is None else "Empty body not allowed"
        if content_type is None:
            return None if rule == "*/*" else "Empty content-type"
        return None


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    name: str
    ty: str  # "SERVICE" | "VIRTUAL_OBJECT" | "WORKFLOW"
    handlers: dict[str, HandlerInfo]
    deployment_id: str
    revision: int
    public: bool
    idempotency_retention_ms: int
    workflow_completion_retention_ms: int | None
    journal_retention_ms: int
    inactivity_timeout_ms: int
    abort_timeout_ms: int
    enable_lazy_state: bool
    retry_initial_interval_ms: int
    retry_exponentiation_factor: float
    retry_max_attempts: int
    retry_max_interval_ms: int
    retry_on_max_attempts: str  # "PAUSE" | "KILL"
    documentation: str | None = None
    metadata: dict[str, str] | None = None
    manifest: ServiceManifest | None = field(default=None, compare=False, repr=False)


def content_type_matches(rule: str, content_type: str) -> bool:
    """`application/json; charset=utf-8` matches `application/json`, `application/*`, `*/*`.
    Case-sensitive, as Restate 1.7.12 compares (`APPLICATION/JSON` is refused)."""
    if rule == "*/*":
        return True
    want_type, _, want_sub = rule.split(";", 1)[0].strip().partition("/")
    got_type, _, got_sub = content_type.split(";", 1)[0].strip().partition("/")
    return want_type in ("*", got_type) and want_sub in ("*", got_sub)


def normalize_uri(uri: str) -> str:
    """`http://host:port` -> `http://host:port/`; other paths are kept as given (as Restate does)."""
    _scheme, sep, rest = uri.partition("://")
    if sep and "/" not in rest:
        return f"{uri}/"
    return uri


@dataclass(frozen=True, slots=True)
class _Record:
    """A deployment with its manifest and per-service overrides set through the admin API."""

    deployment: Deployment
    manifest: Manifest
    overrides: dict[str, dict[str, Any]]  # service name -> PATCHed fields


@dataclass(frozen=True, slots=True)
class Registration:
    """Outcome of `Registry.register`: `created` means 201 (a new deployment id)."""

    created: bool
    deployment: Deployment
    services: list[ServiceInfo]


class Registry:
    """In-memory schema with sync lookups; every change is persisted before it becomes visible."""

    def __init__(self, store: MetadataStore, defaults: ServiceDefaults | None = None) -> None:
        self._store = store
        self._defaults = defaults or ServiceDefaults()
        self._records: dict[str, _Record] = {}
        self._latest: dict[str, ServiceInfo] = {}
        self._at: dict[tuple[str, str], ServiceInfo] = {}
        self._lock = asyncio.Lock()
        self._raw: bytes | None = None  # the stored document the records were read from

    @classmethod
    async def load(cls, store: MetadataStore, defaults: ServiceDefaults | None = None) -> Registry:
        registry = cls(store, defaults)
        raw = await store.get_meta(SCHEMA_KEY)
        if raw:
            registry._records = _decode_schema(raw)
        registry._raw = raw
        registry._reindex()
        return registry

    async def refresh(self) -> bool:
        """Reload what another node sharing the store registered (a cluster); True if it changed."""
        async with self._lock:
            raw = await self._store.get_meta(SCHEMA_KEY)
            if raw == self._raw:
                return False
            self._records = _decode_schema(raw) if raw else {}
            self._raw = raw
            self._reindex()
            return True

    # --- lookups (sync, no I/O) ---
    def service(self, name: str) -> ServiceInfo | None:
        """Latest revision of a service."""
        return self._latest.get(name)

    def service_at(self, name: str, deployment_id: str) -> ServiceInfo | None:
        """The service as exposed by one deployment (for invocations pinned to it)."""
        return self._at.get((deployment_id, name))

    def deployment(self, deployment_id: str) -> Deployment | None:
        record = self._records.get(deployment_id)
        return record.deployment if record else None

    def services(self) -> list[ServiceInfo]:
        return list(self._latest.values())

    def deployments(self) -> list[Deployment]:
        return [r.deployment for r in self._records.values()]

    def deployment_services(self, deployment_id: str) -> list[ServiceInfo]:
        record = self._records.get(deployment_id)
        if record is None:
            return []
        return [self._at[(deployment_id, s.name)] for s in record.manifest.services]

    def deployment_by_uri(self, uri: str) -> Deployment | None:
        uri = normalize_uri(uri)
        for record in self._records.values():
            if record.deployment.uri == uri:
                return record.deployment
        return None

    # --- changes ---
    async def register(
        self,
        uri: str,
        manifest: Manifest,
        *,
        sdk_version: str | None,
        additional_headers: Mapping[str, str] | None = None,
        use_http_11: bool = False,
        force: bool = False,
        breaking: bool = False,
        dry_run: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ) -> Registration:
        """Register a discovered manifest at `uri` (POST /deployments semantics)."""
        uri = normalize_uri(uri)
        async with self._lock:
            existing = self.deployment_by_uri(uri)
            if existing is not None:
                old = self._records[existing.id]
                if not force or _same_manifest(old.manifest, manifest):
                    return Registration(False, existing, self.deployment_services(existing.id))
                dep_id, created_at = existing.id, existing.created_at_ms
            else:
                dep_id, created_at = new_deployment_id(), _now_ms()
            # Revisions count up over every deployment, this one's previous version included.
            revisions = {s.name: _max_revision(self._records, s.name) + 1 for s in manifest.services}
            records = dict(self._records)
            records.pop(dep_id, None)
            self._check_types(records, manifest, allow=force or breaking)
            deployment = Deployment(
                id=dep_id,
                uri=uri,
                protocol_mode=manifest.protocol_mode,
                http_version="HTTP/1.1" if use_http_11 else "HTTP/2.0",
                min_protocol_version=manifest.min_protocol_version,
                max_protocol_version=manifest.max_protocol_version,
                sdk_version=sdk_version,
                additional_headers=dict(additional_headers or {}),
                created_at_ms=created_at,
                services=revisions,
                metadata=dict(metadata or {}),
            )
            record = _Record(deployment, manifest, {})
            records[dep_id] = record
            if not dry_run:
                await self._commit(records)
            infos = [_service_info(record, s, self._defaults) for s in manifest.services]
            return Registration(existing is None, deployment, infos)

    async def update_deployment(
        self,
        deployment_id: str,
        *,
        uri: str | None = None,
        additional_headers: Mapping[str, str] | None = None,
        use_http_11: bool | None = None,
        manifest: Manifest | None = None,
        sdk_version: str | None = None,
        dry_run: bool = False,
    ) -> Deployment:
        """PATCH /deployments/{id}: change connection details, or replace the manifest in place."""
        async with self._lock:
            record = self._records.get(deployment_id)
            if record is None:
                raise RegistryError(f"not found in the schema registry: {deployment_id}", 404)
            dep = record.deployment
            changes: dict[str, Any] = {}
            if uri is not None:
                changes["uri"] = normalize_uri(uri)
            if additional_headers is not None:
                changes["additional_headers"] = dict(additional_headers)
            if use_http_11 is not None:
                changes["http_version"] = "HTTP/1.1" if use_http_11 else "HTTP/2.0"
            new_manifest = record.manifest
            if manifest is not None:
                new_manifest = manifest
                changes.update(
                    protocol_mode=manifest.protocol_mode,
                    sdk_version=sdk_version,
                    min_protocol_version=manifest.min_protocol_version,
                    max_protocol_version=manifest.max_protocol_version,
                    services={
                        s.name: dep.services.get(s.name) or _max_revision(self._records, s.name) + 1
                        for s in manifest.services
                    },
                )
            new = _Record(dataclasses.replace(dep, **changes), new_manifest, record.overrides)
            if not dry_run:
                await self._commit({**self._records, deployment_id: new})
            return new.deployment

    async def remove_deployment(self, deployment_id: str) -> None:
        """DELETE /deployments/{id}?force=true: services fall back to their previous revision."""
        async with self._lock:
            if deployment_id not in self._records:
                raise RegistryError(
                    f"not found in the schema registry: deployment with id '{deployment_id}'", 404
                )
            records = {k: v for k, v in self._records.items() if k != deployment_id}
            await self._commit(records)

    async def patch_service(self, name: str, changes: Mapping[str, Any]) -> ServiceInfo:
        """PATCH /services/{name}: override `PATCHABLE` fields of the latest revision."""
        async with self._lock:
            info = self._latest.get(name)
            if info is None:
                raise RegistryError(f"not found in the schema registry: service with name '{name}'", 404)
            unknown = set(changes) - set(PATCHABLE)
            assert not unknown, f"not patchable: {unknown}"
            if "workflow_completion_retention_ms" in changes and info.ty != "WORKFLOW":
                kind = "Service" if info.ty == "SERVICE" else "VirtualObject"
                raise RegistryError(f"modifying retention time for service type {kind} is unsupported", 400)
            record = self._records[info.deployment_id]
            overrides = {**record.overrides, name: {**record.overrides.get(name, {}), **changes}}
            records = {**self._records, info.deployment_id: dataclasses.replace(record, overrides=overrides)}
            await self._commit(records)
            return self._latest[name]

    # --- internals ---
    def _check_types(self, records: Mapping[str, _Record], manifest: Manifest, *, allow: bool) -> None:
        if allow:
            return
        for service in manifest.services:
            current = _latest_service(records, service.name)
            if current is not None and current.ty != service.ty:
                raise RegistryError(
                    f"[META0006] detected a new service revision for '{service.name}' changing the "
                    "service type from previous revision. Service type cannot be changed across revisions.",
                    409,
                    "META0006",
                )

    async def _commit(self, records: dict[str, _Record]) -> None:
        raw = _encode_schema(records)
        await self._store.put_meta(SCHEMA_KEY, raw)
        self._raw = raw
        self._records = records
        self._reindex()

    def _reindex(self) -> None:
        at: dict[tuple[str, str], ServiceInfo] = {}
        latest: dict[str, ServiceInfo] = {}
        for record in self._records.values():
            for service in record.manifest.services:
                info = _service_info(record, service, self._defaults)
                at[(record.deployment.id, service.name)] = info
                best = latest.get(service.name)
                if best is None or info.revision > best.revision:
                    latest[service.name] = info
        self._at = at
        self._latest = latest


def _now_ms() -> int:
    return int(time.time() * 1000)


def _same_manifest(a: Manifest, b: Manifest) -> bool:
    return (a.protocol_mode, a.min_protocol_version, a.max_protocol_version, a.services) == (
        b.protocol_mode,
        b.min_protocol_version,
        b.max_protocol_version,
        b.services,
    )


def _max_revision(records: Mapping[str, _Record], name: str) -> int:
    return max((r.deployment.services.get(name, 0) for r in records.values()), default=0)


def _latest_service(records: Mapping[str, _Record], name: str) -> ServiceManifest | None:
    best: tuple[int, ServiceManifest] | None = None
    for record in records.values():
        revision = record.deployment.services.get(name)
        if revision is None:
            continue
        if best is None or revision > best[0]:
            found = next(s for s in record.manifest.services if s.name == name)
            best = (revision, found)
    return best[1] if best else None


def _pick(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _service_info(record: _Record, service: ServiceManifest, defaults: ServiceDefaults) -> ServiceInfo:
    """Effective settings: PATCH override, else manifest option, else the server's default."""
    dep = record.deployment
    over = record.overrides.get(service.name, {})
    o = service.options
    rr = dep.protocol_mode == "REQUEST_RESPONSE"
    workflow_handler = next((h for h in service.handlers if h.ty == "WORKFLOW"), None)
    wf_retention = None
    if service.ty == "WORKFLOW":
        wf_retention = _pick(
            workflow_handler.options.workflow_completion_retention_ms if workflow_handler else None,
            over.get("workflow_completion_retention_ms"),
            defaults.workflow_completion_retention_ms,
        )
    public = _pick(over.get("public"), None if o.ingress_private is None else not o.ingress_private, True)
    svc = dict(
        idempotency_retention_ms=_pick(
            over.get("idempotency_retention_ms"),
            o.idempotency_retention_ms,
            defaults.idempotency_retention_ms,
        ),
        journal_retention_ms=_pick(
            over.get("journal_retention_ms"), o.journal_retention_ms, defaults.journal_retention_ms
        ),
        inactivity_timeout_ms=_pick(
            over.get("inactivity_timeout_ms"),
            o.inactivity_timeout_ms,
            0 if rr else defaults.inactivity_timeout_ms,
        ),
        abort_timeout_ms=_pick(over.get("abort_timeout_ms"), o.abort_timeout_ms, defaults.abort_timeout_ms),
        enable_lazy_state=_pick(o.enable_lazy_state, False),
        retry_initial_interval_ms=_pick(o.retry_initial_interval_ms, defaults.retry_initial_interval_ms),
        retry_exponentiation_factor=_pick(
            o.retry_exponentiation_factor, defaults.retry_exponentiation_factor
        ),
        retry_max_attempts=_pick(o.retry_max_attempts, defaults.retry_max_attempts),
        retry_max_interval_ms=_pick(o.retry_max_interval_ms, defaults.retry_max_interval_ms),
        retry_on_max_attempts=_pick(o.retry_on_max_attempts, defaults.retry_on_max_attempts),
    )
    handlers = {h.name: _handler_info(h, svc, bool(public), wf_retention) for h in service.handlers}
    return ServiceInfo(
        name=service.name,
        ty=service.ty,
        handlers=handlers,
        deployment_id=dep.id,
        revision=dep.services[service.name],
        public=bool(public),
        workflow_completion_retention_ms=wf_retention,
        documentation=o.documentation,
        metadata=o.metadata,
        manifest=service,
        **svc,
    )


def _handler_info(
    h: HandlerManifest, svc: dict[str, Any], service_public: bool, wf_retention: int | None
) -> HandlerInfo:
    o = h.options
    public = service_public and not o.ingress_private
    return HandlerInfo(
        name=h.name,
        ty=h.ty,
        public=public,
        input_content_type=h.input.content_type,
        input_required=h.input.required,
        output_content_type=h.output.content_type,
        set_content_type_if_empty=h.output.set_content_type_if_empty,
        idempotency_retention_ms=_pick(o.idempotency_retention_ms, svc["idempotency_retention_ms"]),
        workflow_completion_retention_ms=wf_retention if h.ty == "WORKFLOW" else None,
        journal_retention_ms=_pick(o.journal_retention_ms, svc["journal_retention_ms"]),
        inactivity_timeout_ms=_pick(o.inactivity_timeout_ms, svc["inactivity_timeout_ms"]),
        abort_timeout_ms=_pick(o.abort_timeout_ms, svc["abort_timeout_ms"]),
        enable_lazy_state=_pick(o.enable_lazy_state, svc["enable_lazy_state"]),
        retry_initial_interval_ms=_pick(o.retry_initial_interval_ms, svc["retry_initial_interval_ms"]),
        retry_exponentiation_factor=_pick(o.retry_exponentiation_factor, svc["retry_exponentiation_factor"]),
        retry_max_attempts=_pick(o.retry_max_attempts, svc["retry_max_attempts"]),
        retry_max_interval_ms=_pick(o.retry_max_interval_ms, svc["retry_max_interval_ms"]),
        retry_on_max_attempts=_pick(o.retry_on_max_attempts, svc["retry_on_max_attempts"]),
        manifest=h,
    )


def _encode_schema(records: Mapping[str, _Record]) -> bytes:
    deployments = []
    for r in records.values():
        d = r.deployment
        deployments.append(
            {
                "id": d.id,
                "uri": d.uri,
                "http_version": d.http_version,
                "sdk_version": d.sdk_version,
                "additional_headers": d.additional_headers,
                "created_at_ms": d.created_at_ms,
                "services": d.services,
                "metadata": d.metadata,
                "overrides": r.overrides,
                "manifest_version": r.manifest.version,
                "manifest": r.manifest.raw,
            }
        )
    return json.dumps({"format": SCHEMA_FORMAT, "deployments": deployments}).encode()


def _decode_schema(raw: bytes) -> dict[str, _Record]:
    doc = json.loads(raw)
    if doc.get("format") != SCHEMA_FORMAT:
        raise ValueError(f"unknown schema format {doc.get('format')!r}; expected {SCHEMA_FORMAT}")
    records: dict[str, _Record] = {}
    for d in doc["deployments"]:
        manifest = manifest_from_json(d["manifest"], d["manifest_version"])
        deployment = Deployment(
            id=d["id"],
            uri=d["uri"],
            protocol_mode=manifest.protocol_mode,
            http_version=d["http_version"],
            min_protocol_version=manifest.min_protocol_version,
            max_protocol_version=manifest.max_protocol_version,
            sdk_version=d["sdk_version"],
            additional_headers=d["additional_headers"],
            created_at_ms=d["created_at_ms"],
            services=d["services"],
            metadata=d["metadata"],
        )
        assert set(deployment.services) == {s.name for s in manifest.services}, deployment.id
        records[deployment.id] = _Record(deployment, manifest, d["overrides"])
    return records
