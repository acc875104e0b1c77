"""Registry semantics (Restate 1.7.12) over the real SQLite store: revisions, force, dry run,
delete fallback, service PATCH, persistence, defaults, and ingress input validation."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from perdure.protocol.discovery import Manifest, manifest_from_json
from perdure.server.registry import Registry, RegistryError
from perdure.server.storage.sqlite import SqliteStorage

GREETER: dict[str, Any] = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 7,
    "services": [
        {
            "name": "Greeter",
            "ty": "SERVICE",
            "handlers": [
                {
                    "name": "greet",
                    "input": {"required": False, "contentType": "application/json"},
                    "output": {"contentType": "application/json", "setContentTypeIfEmpty": False},
                },
                {"name": "ping", "input": {}, "output": {"setContentTypeIfEmpty": False}},
            ],
        }
    ],
}


def manifest(doc: dict[str, Any] = GREETER, **service_options: Any) -> Manifest:
    doc = copy.deepcopy(doc)
    doc["services"][0].update(service_options)
    return manifest_from_json(doc)


def changed() -> Manifest:
    doc = copy.deepcopy(GREETER)
    doc["services"][0]["handlers"].append({"name": "extra"})
    return manifest_from_json(doc)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    storage = SqliteStorage(tmp_path / "data")
    await storage.open()
    try:
        yield storage
    finally:
        await storage.close()


async def register(reg: Registry, uri: str, m: Manifest | None = None, **kw: Any) -> Any:
    return await reg.register(uri, m or manifest(), sdk_version="sdk/1", **kw)


async def test_new_uri_creates_revision_one_with_restate_defaults(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    result = await register(reg, "http://127.0.0.1:9080")
    assert result.created and result.deployment.uri == "http://127.0.0.1:9080/"
    svc = reg.service("Greeter")
    assert svc is not None and svc.revision == 1 and svc.deployment_id == result.deployment.id
    assert (svc.idempotency_retention_ms, svc.journal_retention_ms) == (86_400_000, 86_400_000)
    assert (svc.inactivity_timeout_ms, svc.abort_timeout_ms) == (60_000, 600_000)
    assert (
        svc.retry_initial_interval_ms,
        svc.retry_exponentiation_factor,
        svc.retry_max_attempts,
        svc.retry_max_interval_ms,
        svc.retry_on_max_attempts,
    ) == (500, 2.0, 70, 60_000, "PAUSE")
    assert svc.public and svc.workflow_completion_retention_ms is None


async def test_same_uri_identical_manifest_returns_the_same_deployment(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    first = await register(reg, "http://h:1/")
    again = await register(reg, "http://h:1/")
    assert not again.created and again.deployment.id == first.deployment.id
    assert len(reg.deployments()) == 1


async def test_changed_manifest_without_force_is_not_applied(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    await register(reg, "http://h:1/")
    result = await register(reg, "http://h:1/", changed())
    assert not result.created
    assert set(result.services[0].handlers) == {"greet", "ping"}
    svc = reg.service("Greeter")
    assert svc is not None and "extra" not in svc.handlers and svc.revision == 1


async def test_force_overwrites_in_place_and_bumps_the_revision(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    first = await register(reg, "http://h:1/")
    result = await register(reg, "http://h:1/", changed(), force=True)
    assert not result.created and result.deployment.id == first.deployment.id
    svc = reg.service("Greeter")
    assert svc is not None and "extra" in svc.handlers and svc.revision == 2


async def test_dry_run_reports_without_applying(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    result = await register(reg, "http://h:1/", dry_run=True)
    assert result.created and result.services[0].revision == 1
    assert reg.deployments() == [] and reg.service("Greeter") is None


async def test_new_uri_for_known_services_keeps_the_old_deployment_for_pinned_invocations(
    store: SqliteStorage,
) -> None:
    reg = await Registry.load(store)
    old = await register(reg, "http://h:1/")
    new = await register(reg, "http://h:2/", changed())
    assert new.created
    latest = reg.service("Greeter")
    assert latest is not None and latest.revision == 2 and latest.deployment_id == new.deployment.id
    pinned = reg.service_at("Greeter", old.deployment.id)
    assert pinned is not None and pinned.revision == 1 and "extra" not in pinned.handlers
    assert reg.deployment(old.deployment.id) is not None


async def test_delete_falls_back_to_the_previous_revision_then_removes_the_service(
    store: SqliteStorage,
) -> None:
    reg = await Registry.load(store)
    first = await register(reg, "http://h:1/")
    second = await register(reg, "http://h:2/")
    await reg.remove_deployment(second.deployment.id)
    svc = reg.service("Greeter")
    assert svc is not None and (svc.revision, svc.deployment_id) == (1, first.deployment.id)
    with pytest.raises(RegistryError) as info:
        await reg.remove_deployment(second.deployment.id)
    assert info.value.status == 404
    await reg.remove_deployment(first.deployment.id)
    assert reg.service("Greeter") is None


async def test_service_type_change_is_refused_unless_breaking(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    await register(reg, "http://h:1/")
    doc = copy.deepcopy(GREETER)
    doc["services"][0]["ty"] = "VIRTUAL_OBJECT"
    with pytest.raises(RegistryError) as info:
        await register(reg, "http://h:2/", manifest_from_json(doc))
    assert (info.value.status, info.value.code) == (409, "META0006")
    assert (await register(reg, "http://h:2/", manifest_from_json(doc), breaking=True)).created


async def test_patch_service_overrides_and_survives_reload(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    await register(reg, "http://h:1/", manifest(inactivityTimeout=30_000))
    svc = await reg.patch_service("Greeter", {"public": False, "idempotency_retention_ms": 7_200_000})
    assert not svc.public and svc.idempotency_retention_ms == 7_200_000
    assert not svc.handlers["greet"].public and svc.inactivity_timeout_ms == 30_000
    with pytest.raises(RegistryError) as info:
        await reg.patch_service("Greeter", {"workflow_completion_retention_ms": 1})
    assert info.value.status == 400
    reloaded = await Registry.load(store)
    again = reloaded.service("Greeter")
    assert again is not None and not again.public and again.idempotency_retention_ms == 7_200_000
    assert [d.id for d in reloaded.deployments()] == [d.id for d in reg.deployments()]


async def test_request_response_deployments_default_to_no_inactivity_timeout(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    doc = copy.deepcopy(GREETER)
    doc["protocolMode"] = "REQUEST_RESPONSE"
    await register(reg, "http://h:1/", manifest_from_json(doc))
    svc = reg.service("Greeter")
    assert svc is not None and svc.inactivity_timeout_ms == 0


async def test_handler_options_override_service_options(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    doc = copy.deepcopy(GREETER)
    doc["services"][0]["abortTimeout"] = 1000
    doc["services"][0]["handlers"][0].update(abortTimeout=2000, retryPolicyMaxAttempts=3)
    await register(reg, "http://h:1/", manifest_from_json(doc))
    svc = reg.service("Greeter")
    assert svc is not None
    assert (svc.handlers["greet"].abort_timeout_ms, svc.handlers["ping"].abort_timeout_ms) == (2000, 1000)
    assert svc.handlers["greet"].retry_max_attempts == 3 and svc.retry_max_attempts == 70


async def test_input_validation_matches_ingress_wording(store: SqliteStorage) -> None:
    reg = await Registry.load(store)
    await register(reg, "http://h:1/")
    svc = reg.service("Greeter")
    assert svc is not None
    greet, ping = svc.handlers["greet"], svc.handlers["ping"]
    assert greet.validate_input("application/json", b'"x"') is None
    assert greet.validate_input("application/json; charset=utf-8", b'"x"') is None
    assert greet.validate_input(None, b"") is None
    assert greet.validate_input(None, b'"x"') == "Empty content-type"
    assert greet.validate_input("text/plain", b"x") == (
        "Content-type 'text/plain' does not match 'application/json'"
    )
    assert ping.validate_input(None, b"") is None
    assert ping.validate_input("application/json", b"1") == (
        "Expected body and content-type to be empty, "
        "but wasn't with content-type 'Some(\"application/json\")'"
    )
