"""Request identity: Restate's signature on every request to a service (discovery and invocations).

With an ed25519 private key configured (`worker.invoker.request-identity-private-key-pem-file`,
PKCS#8 PEM as `openssl genpkey -algorithm ed25519` writes it), each request carries
`x-restate-signature-scheme: v1` and `x-restate-jwt-v1: <JWT>`: alg EdDSA, `kid` the public key
as the SDKs are configured with it (`publickeyv1_` + base58 of the 32 raw bytes), claims `aud` =
the path under the deployment URI (`/discover`, `/invoke/{service}/{handler}`, as Restate signs),
`iat`, `nbf` (a minute early, for clock skew) and `exp` (iat + the configured expiration).
Tokens are reused for the same path within a second (the claims would be identical).
"""

from __future__ import annotations

import time
from pathlib import Path

import base58
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
SCHEME_V1 = "v1"
PUBLIC_KEY_PREFIX = "publickeyv1_"
NOT_BEFORE_SKEW_S = 60
CACHED_PATHS_MAX = 10_000


class IdentityKeyError(ValueError):
    """The configured private key cannot be used for request signing."""


def public_key_id(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return PUBLIC_KEY_PREFIX + base58.b58encode(raw).decode()


class RequestSigner:
    """Signs request paths with one ed25519 key."""

    def __init__(self, key: Ed25519PrivateKey, expiration_ms: int) -> None:
        assert expiration_ms > 0
        self._key = key
        self._expiration_s = max(1, expiration_ms // 1000)
        self.key_id = public_key_id(key)
        self._cache: dict[str, tuple[int, str]] = {}

    @classmethod
    def from_pem_file(cls, path: Path, expiration_ms: int) -> RequestSigner:
        try:
            key = load_pem_private_key(path.read_bytes(), password=None)
        except OSError as exc:
            raise IdentityKeyError(f"cannot read the request identity key {path}: {exc.strerror}") from None
        except (ValueError, TypeError) as exc:
            raise IdentityKeyError(f"{path} is not a PEM private key: {exc}") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityKeyError(f"{path} holds a {type(key).__name__}; request identity needs ed25519")
        return cls(key, expiration_ms)

    def token(self, path: str, now_s: int | None = None) -> str:
        now = int(time.time()) if now_s is None else now_s
        cached = self._cache.get(path)
        if cached is not None and cached[0] == now:
            return cached[1]
        claims = {"aud": path, "iat": now, "nbf": now - NOT_BEFORE_SKEW_S, "exp": now + self._expiration_s}
        token = jwt.encode(claims, self._key, algorithm="EdDSA", headers={"kid": self.key_id})
        if len(self._cache) >= CACHED_PATHS_MAX:
            self._cache.clear()
        self._cache[path] = (now, token)
        return token

    def headers(self, path: str) -> list[tuple[str, str]]:
        """The signature headers for a request to `path` (e.g. `/invoke/Svc/handler`)."""
        return [(SCHEME_HEADER, SCHEME_V1), (JWT_HEADER, self.token(path))]
