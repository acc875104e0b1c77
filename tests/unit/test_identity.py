"""Request identity: Perdure's signer and its SDK's verifier agree, and the verifier refuses
what the official SDKs refuse (wrong key, wrong path, expired, unsigned)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from perdure.sdk.identity import IdentityError, IdentityVerifier, normalise_path
from perdure.server.invoker.identity import RequestSigner
from tests.support.paths import perdure_executable


def _signer(expiration_ms: int = 60_000) -> RequestSigner:
    return RequestSigner(Ed25519PrivateKey.generate(), expiration_ms)


def test_signed_requests_verify_with_the_signers_public_key() -> None:
    signer = _signer()
    verifier = IdentityVerifier([signer.key_id])
    verifier.verify(dict(signer.headers("/invoke/Svc/run")), "/invoke/Svc/run")
    verifier.verify(dict(signer.headers("/invoke/Svc/run")), "/mounted/here/invoke/Svc/run")
    verifier.verify(dict(signer.headers("/discover")), "/mounted/discover")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/invoke/a/b", "/invoke/a/b"),
        ("/foo/bar/invoke/a/b", "/invoke/a/b"),
        ("/foo/discover", "/discover"),
        ("/invoke/a", "/invoke/a"),
        ("/foo", "/foo"),
    ],
)
def test_paths_normalise_as_the_official_sdks_do(path: str, expected: str) -> None:
    assert normalise_path(path) == expected


def test_wrong_key_path_expiry_and_unsigned_are_refused() -> None:
    signer, other = _signer(), _signer()
    verifier = IdentityVerifier([signer.key_id])
    with pytest.raises(IdentityError, match="invalid JWT"):
        verifier.verify(dict(other.headers("/discover")), "/discover")
    with pytest.raises(IdentityError, match="invalid JWT"):
        verifier.verify(dict(signer.headers("/invoke/A/b")), "/invoke/A/c")
    stale = signer.token("/discover", now_s=int(time.time()) - 120)
    with pytest.raises(IdentityError, match="expired"):
        verifier.verify({"x-restate-signature-scheme": "v1", "x-restate-jwt-v1": stale}, "/discover")
    with pytest.raises(IdentityError, match="missing header"):
        verifier.verify({}, "/discover")
    with pytest.raises(IdentityError, match="unsigned"):
        verifier.verify({"x-restate-signature-scheme": "unsigned"}, "/discover")


def test_server_refuses_a_key_that_is_not_ed25519(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = tmp_path / "key.pem"
    key.write_bytes(pem)
    proc = subprocess.run(
        [str(perdure_executable()), "server", "--data-dir", str(tmp_path / "d")],
        env={
            "RESTATE_WORKER__INVOKER__REQUEST_IDENTITY_PRIVATE_KEY_PEM_FILE": str(key),
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "request identity needs ed25519" in proc.stderr
