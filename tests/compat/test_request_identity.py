"""Request signing: the real Restate server and Perdure, given the same ed25519 private key
(`worker.invoker.request-identity-private-key-pem-file`), sign discovery and invocations alike;
the official Python SDK and Perdure's SDK with `identity_keys` serve them, and refuse unsigned
requests and requests signed with another key."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import base58
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support import PythonService, Server, make_server, selected_servers

KEY_ENV = "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE"
SDKS = {"official": "tests.compat.services.configured", "perdure": "tests.compat.services.signed_perdure"}


def _new_key(directory: Path, name: str) -> tuple[Path, str]:
    """A PKCS#8 PEM private key file and its `publickeyv1_` id."""
    key = Ed25519PrivateKey.generate()
    path = directory / f"{name}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return path, "publickeyv1_" + base58.b58encode(raw).decode()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str]]:
    root = tmp_path_factory.mktemp("identity-keys")
    return {"server": _new_key(root, "server"), "other": _new_key(root, "other")}


@pytest.fixture(scope="module", params=selected_servers())
def signing(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    keys: dict[str, tuple[Path, str]],
) -> Iterator[Server]:
    root = tmp_path_factory.mktemp(f"identity-{request.param}")
    with make_server(str(request.param), root / "data", env={KEY_ENV: str(keys["server"][0])}) as srv:
        yield srv


def _endpoint(sdk: str, public_key: str, log_dir: Path) -> PythonService:
    return PythonService(
        SDKS[sdk],
        "signed_app",
        env={"IDENTITY_PUBLIC_KEY": public_key},
        log_dir=log_dir,
        name=f"signed-{sdk}",
    )


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_sdk_with_identity_keys_serves_a_signing_server(
    signing: Server, keys: dict[str, tuple[Path, str]], sdk: str, tmp_path: Path
) -> None:
    with _endpoint(sdk, keys["server"][1], tmp_path) as svc:
        resp = httpx.post(
            f"{signing.admin_url}/deployments", json={"uri": svc.url, "force": True}, timeout=30
        )
        assert resp.status_code in (200, 201), resp.text
        call = httpx.post(f"{signing.ingress_url}/ConfEcho/say", json="signed", timeout=30)
        assert call.status_code == 200, call.text
        assert call.json() == "echo signed"


@pytest.mark.parametrize("sdk", sorted(SDKS))
def test_sdk_refuses_unsigned_and_wrongly_signed_requests(
    signing: Server, keys: dict[str, tuple[Path, str]], sdk: str, tmp_path: Path
) -> None:
    with _endpoint(sdk, keys["other"][1], tmp_path) as svc:
        # What a server without a key sends: no signature headers at all.
        unsigned = httpx.get(
            f"{svc.url}/discover", headers={"accept": "application/vnd.restate.endpointmanifest.v3+json"}
        )
        assert unsigned.status_code == 401
        # The signing server's key is not the one this endpoint trusts.
        resp = httpx.post(
            f"{signing.admin_url}/deployments", json={"uri": svc.url, "force": True}, timeout=30
        )
        assert resp.status_code >= 400, resp.text
        assert "401" in resp.text


class _Capture(http.server.BaseHTTPRequestHandler):
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append({k.lower(): v for k, v in self.headers.items()} | {":path": self.path})
        self.send_response(404)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _signature_of(server: Server) -> dict[str, Any]:
    """The signature headers `server` sends to `/discover` (an HTTP/1.1 endpoint that answers 404)."""
    _Capture.seen = []
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Capture)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        uri = f"http://127.0.0.1:{httpd.server_address[1]}/prefix"
        httpx.post(f"{server.admin_url}/deployments", json={"uri": uri, "use_http_11": True}, timeout=30)
    finally:
        httpd.shutdown()
    assert _Capture.seen, "the server sent no discovery request"
    headers = _Capture.seen[0]
    token = headers["x-restate-jwt-v1"]
    return {
        "scheme": headers["x-restate-signature-scheme"],
        "path": headers[":path"],
        "header": jwt.get_unverified_header(token),
        "claims": jwt.decode(token, options={"verify_signature": False}),
        "token": token,
    }


def test_signature_headers_are_restates(signing: Server, keys: dict[str, tuple[Path, str]]) -> None:
    sig = _signature_of(signing)
    assert sig["scheme"] == "v1"
    assert sig["header"]["alg"] == "EdDSA"
    assert sig["header"]["kid"] == keys["server"][1]
    claims = sig["claims"]
    assert set(claims) == {"aud", "exp", "iat", "nbf"}
    assert sig["path"] == "/prefix/discover"
    assert claims["aud"] == "/discover"  # the path under the deployment URI, as Restate signs it
    assert claims["exp"] - claims["iat"] == 60  # request-identity-expiration = 1m
    # Verifiable with the server's public key.
    public = serialization.load_pem_private_key(keys["server"][0].read_bytes(), None).public_key()
    jwt.decode(sig["token"], public, algorithms=["EdDSA"], audience=claims["aud"])  # type: ignore[arg-type]
