"""Manifest parsing and validation (sans-IO), with Restate 1.7.12's rules and wording."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from perdure.protocol.discovery import (
    ACCEPT_HEADER,
    InputRules,
    ManifestError,
    manifest_version_of,
    parse_manifest,
)

# What the official Python SDK 1.3.0 sends for a Greeter and a Counter object (observed).
PYTHON_SDK = {
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
                    "input": {
                        "required": False,
                        "contentType": "application/json",
                        "jsonSchema": {"type": "string"},
                    },
                    "output": {
                        "contentType": "application/json",
                        "setContentTypeIfEmpty": False,
                        "jsonSchema": {"type": "string"},
                    },
                }
            ],
        },
        {
            "name": "Counter",
            "ty": "VIRTUAL_OBJECT",
            "handlers": [
                {
                    "name": "add",
                    "ty": "EXCLUSIVE",
                    "input": {"required": False, "contentType": "application/json"},
                    "output": {"contentType": "application/json", "setContentTypeIfEmpty": False},
                },
                {
                    "name": "get",
                    "ty": "SHARED",
                    "input": {},
                    "output": {"contentType": "application/json", "setContentTypeIfEmpty": False},
                },
            ],
        },
    ],
}


def _parse(doc: dict[str, Any]) -> Any:
    return parse_manifest(json.dumps(doc).encode())


def _with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PYTHON_SDK)
    doc.update(changes)
    return doc


def test_python_sdk_manifest_parses_with_handler_types_and_input_rules() -> None:
    manifest = _parse(PYTHON_SDK)
    assert (manifest.protocol_mode, manifest.min_protocol_version, manifest.max_protocol_version) == (
        "BIDI_STREAM",
        5,
        7,
    )
    greeter, counter = manifest.services
    assert greeter.handlers[0].ty is None
    assert greeter.handlers[0].input == InputRules("application/json", False, {"type": "string"})
    add, get = counter.handlers
    assert (add.ty, get.ty) == ("EXCLUSIVE", "SHARED")
    assert get.input.content_type is None  # `input: {}` means the handler takes no input


def test_defaults_when_input_output_and_handler_type_are_absent() -> None:
    doc = _with(
        services=[
            {"name": "W", "ty": "WORKFLOW", "handlers": [{"name": "run"}]},
            {"name": "O", "ty": "VIRTUAL_OBJECT", "handlers": [{"name": "a"}]},
        ]
    )
    wf, obj = _parse(doc).services
    assert wf.handlers[0].ty == "SHARED" and obj.handlers[0].ty == "EXCLUSIVE"
    assert wf.handlers[0].input.content_type == "*/*"
    assert wf.handlers[0].output.content_type == "application/json"


def test_missing_protocol_mode_is_meta0013() -> None:
    doc = _with()
    del doc["protocolMode"]
    with pytest.raises(ManifestError) as info:
        _parse(doc)
    assert info.value.code == "META0013"
    assert info.value.message == "received a bad response from the SDK: missing protocol mode"


@pytest.mark.parametrize(("lo", "hi"), [(1, 4), (8, 9), (7, 5)])
def test_protocol_version_range_must_intersect_5_to_7(lo: int, hi: int) -> None:
    with pytest.raises(ManifestError) as info:
        _parse(_with(minProtocolVersion=lo, maxProtocolVersion=hi))
    assert info.value.code == "META0012"
    assert info.value.message.startswith(f"unsupported service protocol versions: [{lo}, {hi}]. ")


def test_a_single_supported_version_is_enough() -> None:
    assert _parse(_with(minProtocolVersion=6, maxProtocolVersion=6)).max_protocol_version == 6


@pytest.mark.parametrize("name", ["1bad", "-x", "a b", "_", ""])
def test_bad_service_names_are_decode_errors_naming_the_pattern(name: str) -> None:
    doc = _with()
    doc["services"][0]["name"] = name
    with pytest.raises(ManifestError) as info:
        _parse(doc)
    assert info.value.decode
    assert info.value.message == 'doesn\'t match pattern "^([a-zA-Z]|_[a-zA-Z0-9])[a-zA-Z0-9._-]*$"'


def test_handler_names_may_not_contain_dots_or_dashes() -> None:
    doc = _with()
    doc["services"][0]["handlers"][0]["name"] = "bad-h"
    with pytest.raises(ManifestError, match=r"\[a-zA-Z0-9_\]\*\$"):
        _parse(doc)
    doc["services"][0]["name"] = "my.svc-1"
    doc["services"][0]["handlers"][0]["name"] = "_ok1"
    assert _parse(doc).services[0].name == "my.svc-1"


def test_unknown_fields_are_rejected_at_every_level_restate_checks() -> None:
    with pytest.raises(ManifestError, match="unknown field `extra`"):
        _parse(_with(extra=1))
    doc = _with()
    doc["services"][0]["workflowCompletionRetention"] = 5  # only valid on handlers
    with pytest.raises(ManifestError, match="unknown field `workflowCompletionRetention`"):
        _parse(doc)


def test_unknown_service_type_lists_the_variants() -> None:
    doc = _with()
    doc["services"][0]["ty"] = "NOPE"
    with pytest.raises(ManifestError, match="unknown variant `NOPE`, expected one of"):
        _parse(doc)


def test_workflow_handler_on_an_object_is_refused_with_400() -> None:
    doc = _with(
        services=[{"name": "O", "ty": "VIRTUAL_OBJECT", "handlers": [{"name": "r", "ty": "WORKFLOW"}]}]
    )
    with pytest.raises(ManifestError) as info:
        _parse(doc)
    assert info.value.status == 400 and "(VirtualObject, Some(Workflow))" in info.value.message


def test_private_service_with_explicitly_public_handler_is_refused() -> None:
    doc = _with()
    doc["services"][0]["ingressPrivate"] = True
    doc["services"][0]["handlers"][0]["ingressPrivate"] = False
    with pytest.raises(ManifestError) as info:
        _parse(doc)
    assert info.value.status == 400
    assert info.value.message.startswith("The service Greeter is private, but the greet is explicitly")


def test_options_are_read_in_milliseconds() -> None:
    doc = _with()
    doc["services"][0].update(
        inactivityTimeout=30_000,
        retryPolicyExponentiationFactor=1.5,
        retryPolicyOnMaxAttempts="KILL",
        enableLazyState=True,
    )
    options = _parse(doc).services[0].options
    assert options.inactivity_timeout_ms == 30_000 and options.retry_exponentiation_factor == 1.5
    assert options.retry_on_max_attempts == "KILL" and options.enable_lazy_state is True


def test_not_json_is_a_decode_error() -> None:
    with pytest.raises(ManifestError) as info:
        parse_manifest(b"{not json")
    assert info.value.decode


def test_content_types_v1_to_v4_are_accepted_and_v5_is_not() -> None:
    for v in (1, 2, 3, 4):
        assert manifest_version_of(f"application/vnd.restate.endpointmanifest.v{v}+json") == v
        assert f"endpointmanifest.v{v}+json" in ACCEPT_HEADER
    assert manifest_version_of("application/vnd.restate.endpointmanifest.v5+json") is None
    assert manifest_version_of("application/json") is None
    assert manifest_version_of(None) is None
