"""Restate identifiers: invocation ids (`inv_1…`), deployment ids (`dp_1…`),
awakeable ids (`sign_1…`), and the deterministic ids of workflows and
idempotent requests. Formats follow the protocol reference, section 6."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from dataclasses import dataclass, field

from perdure.protocol.errors import ProtocolError

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_PAIRS = [a + b for a in ALPHABET for b in ALPHABET]  # two digits a division: half the divmods
PK_CHARS = 11
UUID_CHARS = 22
INVOCATION_ID_LEN = len("inv_1") + PK_CHARS + UUID_CHARS
SIGNAL_CANCEL = 1


class IdError(ValueError):
    """A malformed identifier; the message says why, as Restate phrases it."""


def b62encode(n: int, width: int) -> str:
    out = []
    while n:
        n, r = divmod(n, 3844)
        out.append(_PAIRS[r])
    out.reverse()
    return "".join(out).lstrip("0").rjust(width, "0")


def b62decode(s: str) -> int:
    n = 0
    for c in s:
        try:
            n = n * 62 + _INDEX[c]
        except KeyError:
            raise IdError("bad base62 character") from None
    return n


@dataclass(frozen=True, slots=True, order=True)
class InvocationId:
    """24 raw bytes: partition key (u64 BE) then uuid (u128 BE)."""

    partition_key: int
    uuid: bytes  # 16 bytes
    raw: bytes = field(init=False, compare=False, repr=False)
    _text: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        raw = self.partition_key.to_bytes(8, "big") + self.uuid
        object.__setattr__(self, "raw", raw)
        object.__setattr__(self, "_text", _inv_str(raw))

    def __str__(self) -> str:
        return self._text

    @classmethod
    def from_raw(cls, raw: bytes) -> InvocationId:
        if len(raw) != 24:
            raise ProtocolError(f"invocation id must be 24 bytes, got {len(raw)}")
        return cls(int.from_bytes(raw[:8], "big"), bytes(raw[8:]))

    @classmethod
    def parse(cls, s: str) -> InvocationId:
        if not s.startswith("inv_"):
            raise IdError("bad prefix")
        if len(s) != INVOCATION_ID_LEN:
            raise IdError("bad length")
        if s[4] != "1":
            raise IdError("bad version")
        pk = b62decode(s[5 : 5 + PK_CHARS])
        uu = b62decode(s[5 + PK_CHARS :])
        if pk >= 1 << 64 or uu >= 1 << 128:
            raise IdError("bad format")
        return cls(int.from_bytes(pk.to_bytes(8, "little"), "big"), uu.to_bytes(16, "little"))

    @classmethod
    def generate(cls, partition_key: int) -> InvocationId:
        return cls(partition_key, _ulid_bytes())

    @classmethod
    def deterministic(cls, partition_key: int, *parts: str, tag: str) -> InvocationId:
        """Id from SHA-256 of tag and parts joined by commas (workflows: tag "wf";
        idempotent requests: tag "ik"), so a resubmission yields the same id."""
        digest = hashlib.sha256(",".join((tag, *parts)).encode()).digest()
        return cls(partition_key, digest[:16])


def _inv_str(raw: bytes) -> str:
    return (
        "inv_1"
        + b62encode(int.from_bytes(raw[:8], "little"), PK_CHARS)
        + b62encode(int.from_bytes(raw[8:], "little"), UUID_CHARS)
    )


def _ulid_bytes() -> bytes:
    ms = int(time.time() * 1000) & ((1 << 48) - 1)
    return ms.to_bytes(6, "big") + os.urandom(10)


def partition_key_of(key: str) -> int:
    """Stable 64-bit partition key for a keyed target (object/workflow key,
    idempotency key)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def random_partition_key() -> int:
    return int.from_bytes(os.urandom(8), "big")


def random_seed_of(raw_id: bytes) -> int:
    """Stable per invocation, so `ctx.random()` repeats across retries."""
    return int.from_bytes(hashlib.blake2b(raw_id, digest_size=8, person=b"perdure-seed").digest(), "big")


def new_deployment_id() -> str:
    return "dp_1" + b62encode(int.from_bytes(_ulid_bytes(), "little"), UUID_CHARS)


def new_subscription_id() -> str:
    """`sub_1` + 22 base62 chars, the same scheme as deployment ids."""
    return "sub_1" + b62encode(int.from_bytes(_ulid_bytes(), "little"), UUID_CHARS)


def is_deployment_id(s: str) -> bool:
    if not s.startswith("dp_1") or len(s) != 4 + UUID_CHARS:
        return False
    return all(c in _INDEX for c in s[4:])


def awakeable_id(invocation: InvocationId, signal_idx: int) -> str:
    raw = invocation.raw + signal_idx.to_bytes(4, "big")
    return "sign_1" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass(frozen=True, slots=True)
class AwakeableRef:
    invocation: InvocationId
    index: int
    legacy: bool  # `prom_1…`: index is a journal entry index (V1-V4)


def parse_awakeable_id(s: str) -> AwakeableRef:
    if s.startswith("sign_1"):
        legacy, payload = False, s[6:]
    elif s.startswith("prom_1"):
        legacy, payload = True, s[6:]
    else:
        raise IdError("id doesn't match the expected type")
    try:
        raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except (ValueError, TypeError):
        raise IdError("id doesn't match the expected type") from None
    if len(raw) != 28:
        raise IdError("id doesn't match the expected type")
    return AwakeableRef(InvocationId.from_raw(raw[:24]), int.from_bytes(raw[24:], "big"), legacy)
