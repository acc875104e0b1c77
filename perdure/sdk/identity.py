"""Request identity verification, as the official SDKs do it: an endpoint configured with
`identity_keys` (`publickeyv1_` + base58 of an ed25519 public key) accepts only requests whose
`x-restate-jwt-v1` token (scheme `v1`) is signed by one of them, for this request path
(`aud`), now (`nbf` <= now < `exp`, no leeway). Anything else is refused with 401."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import base58
import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

SCHEME_HEADER = "x-restate-signature-scheme"
JWT_HEADER = "x-restate-jwt-v1"
PUBLIC_KEY_PREFIX = "publickeyv1_"
REQUIRED_CLAIMS = ("aud", "exp", "iat", "nbf")


class IdentityError(Exception):
    """The request is not signed by a trusted key; the message says why."""


def parse_public_key(text: str) -> Ed25519PublicKey:
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(f"identity v1 public keys start with {PUBLIC_KEY_PREFIX}, got {text!r}")
    raw = base58.b58decode(text[len(PUBLIC_KEY_PREFIX) :])
    if len(raw) != 32:
        raise ValueError(f"a decoded identity key has 32 bytes, this one has {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def normalise_path(path: str) -> str:
    """The audience a path is signed for: from the last `/invoke/{service}/{handler}`, or the
    last `/discover` (an endpoint may be mounted under a prefix the server includes)."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[-3] == "invoke":
        return "/" + "/".join(parts[-3:])
    if len(parts) >= 2 and parts[-1] == "discover":
        return "/discover"
    return path


class IdentityVerifier:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = [parse_public_key(k) for k in keys]
        if not self._keys:
            raise ValueError("an identity verifier needs at least one key")

    def verify(self, headers: Mapping[str, str], path: str) -> None:
        """Returns if the request is signed by a trusted key; IdentityError otherwise."""
        scheme = headers.get(SCHEME_HEADER)
        if scheme is None:
            raise IdentityError(f"missing header: {SCHEME_HEADER}")
        if scheme == "unsigned":
            raise IdentityError(
                "got unsigned request, expecting only signed requests matching the configured keys"
            )
        if scheme != "v1":
            raise IdentityError(f"bad {SCHEME_HEADER} header, unexpected value {scheme}")
        token = headers.get(JWT_HEADER)
        if token is None:
            raise IdentityError(f"missing header: {JWT_HEADER}")
        audience = normalise_path(path)
        last: Exception | None = None
        for key in self._keys:
            try:
                jwt.decode(
                    token,
                    key,
                    algorithms=["EdDSA"],
                    audience=audience,
                    options={"require": list(REQUIRED_CLAIMS)},
                    leeway=0,
                )
                return
            except jwt.PyJWTError as exc:
                last = exc
        raise IdentityError(f"invalid JWT: {last}")
