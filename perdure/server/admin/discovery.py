"""Discovery of a service endpoint: `GET {uri}discover` over h2c, manifest
parsed and validated. Errors are phrased like Restate's (META codes)."""

from __future__ import annotations

import asyncio

from perdure.protocol.discovery import MANIFEST_ACCEPT, MANIFEST_CONTENT_TYPES, Manifest, parse_manifest
from perdure.server.invoker.h2client import H2Client, H2Error
from perdure.server.registry import normalize_uri

DISCOVERY_TIMEOUT_S = 10.0
MANIFEST_SIZE_MAX = 16 * 1024 * 1024


class DiscoveryError(Exception):
    def __init__(self, status: int, message: str, code: str = "META0003") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


async def discover(
    client: H2Client, uri: str, headers: dict[str, str], *, use_http_11: bool = False
) -> tuple[Manifest, bytes, str | None]:
    """The endpoint's manifest, its raw JSON, and its `x-restate-server` header."""
    url = normalize_uri(uri) + "discover"
    if use_http_11:
        raise DiscoveryError(400, "[META0003] HTTP/1.1 deployments are not supported yet; use h2c")
    try:
        async with asyncio.timeout(DISCOVERY_TIMEOUT_S):
            stream = await client.request(
                url, "GET", [("accept", MANIFEST_ACCEPT), *headers.items()], end_stream=True
            )
            status, rheaders = await stream.response()
            chunks = []
            size = 0
            while chunk := await stream.receive():
                size += len(chunk)
                if size > MANIFEST_SIZE_MAX:
                    stream.reset()
                    raise DiscoveryError(500, f"[META0003] the manifest of '{uri}' is too large")
                chunks.append(chunk)
    except TimeoutError:
        raise DiscoveryError(500, f"[META0003] [META0003] error when calling '{uri}': timed out") from None
    except (H2Error, OSError) as exc:
        raise DiscoveryError(500, f"[META0003] [META0003] error when calling '{uri}': {exc}") from None
    if status == 404:
        raise DiscoveryError(
            500,
            f"[META0003] [META0003] error when calling '{uri}': the endpoint answered 404 for {url}; "
            "check the deployment URI is the base path of the service endpoint",
        )
    if not 200 <= status < 300:
        raise DiscoveryError(500, f"[META0003] [META0003] error when calling '{uri}': HTTP status {status}")
    hd = dict(rheaders)
    ctype = hd.get("content-type", "")
    if ctype.split(";")[0].strip() not in MANIFEST_CONTENT_TYPES:
        raise DiscoveryError(
            500, f"[META0003] unexpected content-type '{ctype}' in the discovery response of '{uri}'"
        )
    body = b"".join(chunks)
    return parse_manifest(body), body, hd.get("x-restate-server")
