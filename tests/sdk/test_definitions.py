"""Serde from type hints and the discovery manifest, checked against the official SDK's
manifest for the same definitions (an independent implementation)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from types import ModuleType
from typing import Any

import pytest
import restate
from pydantic import BaseModel
from restate.discovery import compute_discovery_json
from restate.endpoint import Endpoint as OfficialEndpoint

import perdure
from perdure.sdk.discovery import manifest, negotiate_manifest_version
from perdure.sdk.handler import handler_of
from perdure.sdk.serde import BytesSerde, DataclassSerde, DefaultSerde, PydanticJsonSerde, serde_for


@dataclass
class Point:
    x: int
    y: int


@dataclass
class Path:
    name: str
    points: list[Point]
    tip: Point | None = None


class Order(BaseModel):
    id: str
    qty: int


def define(sdk: ModuleType) -> list[Any]:
    """The same definitions written once, for either SDK."""
    greeter = sdk.Service("Greeter", description="says hello", inactivity_timeout=timedelta(seconds=5))

    @greeter.handler()
    async def greet(ctx: Any, name: str) -> str:
        return name

    @greeter.handler(name="ping")
    async def no_io(ctx: Any) -> None:
        return None

    @greeter.handler()
    async def untyped(ctx: Any, x):  # type: ignore[no-untyped-def]
        return x

    counter = sdk.VirtualObject("Counter")

    @counter.handler()
    async def add(ctx: Any, delta: int) -> int:
        return delta

    @counter.handler(kind="shared")
    async def get(ctx: Any) -> int:
        return 1

    orders = sdk.Workflow("Orders")

    @orders.main()
    async def run(ctx: Any, order: Order) -> Order:
        return order

    @orders.handler()
    async def items(ctx: Any, q: dict[str, Any]) -> list[str]:
        return []

    return [greeter, counter, orders]


def test_manifest_matches_the_official_sdk() -> None:
    ours = manifest(define(perdure), "bidi", 4)
    endpoint = OfficialEndpoint()
    endpoint.bind(*define(restate))
    theirs = json.loads(compute_discovery_json(endpoint, 4, "bidi"))
    assert theirs["maxProtocolVersion"] == 7 and ours["maxProtocolVersion"] == 6  # we speak V5 and V6
    ours.pop("maxProtocolVersion")
    theirs.pop("maxProtocolVersion")
    assert ours == theirs


def test_manifest_version_negotiation() -> None:
    offered = ", ".join(f"application/vnd.restate.endpointmanifest.v{v}+json" for v in (1, 2, 3, 4))
    assert negotiate_manifest_version(offered) == 4
    assert negotiate_manifest_version("application/vnd.restate.endpointmanifest.v3+json") == 3
    assert negotiate_manifest_version("application/json") is None
    assert manifest([], "request_response", 4)["protocolMode"] == "REQUEST_RESPONSE"


def test_handlers_pick_serdes_from_type_hints() -> None:
    svc = perdure.Service("Typed")

    @svc.handler()
    async def order(ctx: perdure.Context, o: Order) -> Path:
        return Path("p", [])

    @svc.handler()
    async def raw(ctx: perdure.Context, b: bytes) -> bytes:
        return b

    io = handler_of(order).handler_io
    assert isinstance(io.input_serde, PydanticJsonSerde)
    assert isinstance(io.output_serde, DataclassSerde)
    assert isinstance(handler_of(raw).handler_io.input_serde, BytesSerde)
    with pytest.raises(ValueError, match="already exists"):
        svc.handler(name="raw")(order)


def test_dataclass_serde_round_trips_nested_values() -> None:
    serde = serde_for(Path, DefaultSerde())
    value = Path("route", [Point(1, 2), Point(3, 4)], tip=Point(5, 6))
    data = serde.serialize(value)
    assert json.loads(data) == {
        "name": "route",
        "points": [{"x": 1, "y": 2}, {"x": 3, "y": 4}],
        "tip": {"x": 5, "y": 6},
    }
    assert serde.deserialize(data) == value
    assert serde.deserialize(b"") is None


def test_default_serde_handles_json_models_and_type_hints() -> None:
    plain: DefaultSerde[Any] = DefaultSerde()
    assert plain.serialize({"a": [1, 2]}) == b'{"a":[1,2]}'
    assert plain.serialize(None) == b""
    assert plain.serialize(Order(id="o", qty=2)) == b'{"id":"o","qty":2}'
    assert plain.serialize(Point(1, 2)) == b'{"x":1,"y":2}'
    assert DefaultSerde(Order).deserialize(b'{"id":"o","qty":2}') == Order(id="o", qty=2)
    assert DefaultSerde(list[Point]).deserialize(b'[{"x":1,"y":2}]') == [Point(1, 2)]
    assert plain.serialize({1: "int keys"}) == b'{"1": "int keys"}'


def test_public_api_has_the_names_restate_users_write() -> None:
    names = [
        "Service", "VirtualObject", "Workflow", "Context", "ObjectContext", "ObjectSharedContext",
        "WorkflowContext", "WorkflowSharedContext", "TerminalError", "app", "gather", "select",
        "as_completed", "wait_completed", "RunOptions", "InvocationRetryPolicy", "DurablePromise",
        "RestateDurableFuture", "RestateDurableCallFuture", "RestateDurableSleepFuture", "SendHandle",
        "SdkInternalBaseException", "is_internal_exception",
    ]  # fmt: skip
    assert [n for n in names if not hasattr(perdure, n)] == []
    assert [n for n in names if not hasattr(restate, n)] == []
    err = perdure.TerminalError("gone", status_code=410)
    assert (err.message, err.status_code) == ("gone", 410)


def test_importing_perdure_does_not_import_the_server() -> None:
    import subprocess
    import sys

    code = "import sys, perdure; print(sorted(m for m in sys.modules if m.startswith('perdure.server')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
