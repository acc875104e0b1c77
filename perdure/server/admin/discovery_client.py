"""`GET {uri}/discover` against a service endpoint, with Restate's error messages."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from http import HTTPStatus
from typing import TYPE_CHECKING

import httpx

from perdure.protocol.discovery import (
    ACCEPT_HEADER,
    Manifest,
    ManifestError,
    manifest_version_of,
    parse_manifest,
)
from perdure.server.invoker.h2client import ConnectError, H2Client, H2Error

if TYPE_CHECKING:  # signing pulls in cryptography and PyJWT; imported only when configured
    from perdure.server.invoker.identity import RequestSigner

DISCOVER_TIMEOUT_S = 30.0
DISCOVER_BODY_BYTES_MAX = 16 << 20
CLUSTER_HEADERS: Mapping[str, str] = {"x-restate-cluster-name": "localcluster"}


class DiscoveryError(Exception):
    """Discovery failed; `status`/`code` map to the admin API error response."""

    def __init__(self, message: str, status: int = 500, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


def _coded(code: str, message: str) -> DiscoveryError:
    return DiscoveryError(f"[{code}] [{code}] {message}", 500, code)


async def discover(
    client: H2Client,
    uri: str,
    additional_headers: Mapping[str, str],
    *,
    use_http_11: bool = False,
    timeout_s: float = DISCOVER_TIMEOUT_S,
    server_headers: Mapping[str, str] = CLUSTER_HEADERS,
    signer: RequestSigner | None = None,
) -> tuple[Manifest, str | None]:
    """Fetch and validate the endpoint's manifest; returns it with the SDK's `x-restate-server`.
    `server_headers` go with every request to a service (the deployment's own win)."""
    url = uri.rstrip("/") + "/discover"
    merged = {**{k.lower(): v for k, v in server_headers.items()}, **additional_headers}
    headers = [("accept", ACCEPT_HEADER), *merged.items()]
    if signer is not None:
        headers.extend(signer.headers("/discover"))  # the path under the deployment URI, as Restate
    try:
        async with asyncio.timeout(timeout_s):
            if use_http_11:
                status, resp_headers, body = await _get_http11(url, headers)
            else:
                status, resp_headers, body = await _get_h2(client, url, headers)
    except TimeoutError:
        raise _coded("META0003", f"error when calling '{uri}': timed out after {timeout_s}s") from None
    except ConnectError as e:
        raise _coded("META0003", f"error when calling '{uri}': h2 pool connection error: {e}") from None
    except (H2Error, httpx.HTTPError, OSError) as e:
        raise _coded("META0003", f"error when calling '{uri}': {e}") from None
    return _interpret(status, resp_headers, body)


def _interpret(status: int, headers: list[tuple[str, str]], body: bytes) -> tuple[Manifest, str | None]:
    text = body.decode("utf-8", "replace")
    if not 200 <= status < 300:
        shown = json.dumps(dict(headers))
        if status == 404:
            raise _coded(
                "META0003",
                f"got status code '404'. Make sure the provided URI has the correct "
                f"path where the Restate SDK endpoint is mounted. Response headers: {shown}. "
                f"Body: {text}",
            )
        raise _coded(
            "META0003", f"got status code '{_status_line(status)}'. Response headers: {shown}. Body: {text}"
        )
    values = dict(headers)
    content_type = values.get("content-type")
    version = manifest_version_of(content_type)
    if version is None:
        raise _coded(
            "META0013",
            f"received a bad response from the SDK: Bad content type header: "
            f'"{content_type}". Expected one of \'"{ACCEPT_HEADER}"\'',
        )
    try:
        manifest = parse_manifest(body, version)
    except ManifestError as e:
        if e.decode:
            raise DiscoveryError(
                f"received a bad response from the SDK that cannot be decoded: "
                f"{e.message}. Discovery response: {text}"
            ) from None
        if e.code is not None:
            raise _coded(e.code, e.message) from None
        raise DiscoveryError(e.message, e.status) from None
    return manifest, values.get("x-restate-server")


def _status_line(status: int) -> str:
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


async def _get_h2(
    client: H2Client, url: str, headers: list[tuple[str, str]]
) -> tuple[int, list[tuple[str, str]], bytes]:
    stream = await client.request(url, "GET", headers, end_stream=True)
    status, resp_headers = await stream.response()
    chunks = bytearray()
    while chunk := await stream.receive():
        chunks += chunk
        if len(chunks) > DISCOVER_BODY_BYTES_MAX:
            stream.reset()
            raise H2Error(f"discovery response larger than {DISCOVER_BODY_BYTES_MAX} bytes")
    return status, resp_headers, bytes(chunks)


async def _get_http11(url: str, headers: list[tuple[str, str]]) -> tuple[int, list[tuple[str, str]], bytes]:
    async with httpx.AsyncClient(http1=True, http2=False, timeout=None) as http:
        response = await http.get(url, headers=headers)
        return response.status_code, list(response.headers.items()), response.content
