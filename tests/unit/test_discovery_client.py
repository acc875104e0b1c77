"""`discover()` against the real official SDKs (Python under hypercorn, TypeScript under node)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from perdure.server.admin.discovery_client import DiscoveryError, discover
from perdure.server.invoker.h2client import H2Client
from tests.support.ports import free_port
from tests.support.services import NodeService, PythonService

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def python_sdk() -> Iterator[str]:
    with PythonService("tests.compat.services.core") as svc:
        yield svc.url


@pytest.fixture(scope="module")
def ts_sdk() -> Iterator[str]:
    with NodeService("tests/compat/services/greeter.cjs", env={"SERVICE_PREFIX": "Disc"}) as svc:
        yield svc.url


async def test_python_sdk_manifest_over_h2c(python_sdk: str) -> None:
    client = H2Client()
    try:
        manifest, sdk = await discover(client, python_sdk + "/", {"x-extra": "1"})
    finally:
        await client.aclose()
    assert sdk == "restate-sdk-python/1.3.0"
    assert manifest.protocol_mode == "BIDI_STREAM" and manifest.version == 4
    assert (manifest.min_protocol_version, manifest.max_protocol_version) == (5, 7)
    assert manifest.services


async def test_python_sdk_over_http_1_1_reports_request_response(python_sdk: str) -> None:
    client = H2Client()
    try:
        manifest, _ = await discover(client, python_sdk, {}, use_http_11=True)
    finally:
        await client.aclose()
    assert manifest.protocol_mode == "REQUEST_RESPONSE"


async def test_typescript_sdk_manifest(ts_sdk: str) -> None:
    client = H2Client()
    try:
        manifest, sdk = await discover(client, ts_sdk, {})
    finally:
        await client.aclose()
    assert sdk == "restate-sdk-typescript/1.17.2"
    names = {s.name: s for s in manifest.services}
    assert set(names) == {"DiscGreeter", "DiscCounter"}
    assert {h.name: h.ty for h in names["DiscCounter"].handlers} == {"add": "EXCLUSIVE", "get": "SHARED"}


async def test_unreachable_endpoint_is_meta0003_like_restate() -> None:
    port = free_port()
    client = H2Client()
    try:
        with pytest.raises(DiscoveryError) as info:
            await discover(client, f"http://127.0.0.1:{port}/", {})
    finally:
        await client.aclose()
    assert (info.value.status, info.value.code) == (500, "META0003")
    assert info.value.message == (
        f"[META0003] [META0003] error when calling 'http://127.0.0.1:{port}/': "
        "h2 pool connection error: Connection refused (os error 111)"
    )
