"""Which partitions a processor owns (sans-IO).

A partition is a range of the 64-bit partition key every invocation id carries
(keyed targets hash their key): `partition = key >> (64 - bits)`, with `2**bits`
partitions. A single node (SQLite, or PostgreSQL without a node name) owns every
partition; in a cluster the node's processor covers the partitions whose leases
it holds, and anything addressed to another partition is not its business: it
answers 503 (the node's router forwards such requests to the owner before they
get here; a 503 means the partition moved meanwhile)."""

from __future__ import annotations

from collections.abc import Iterable

from perdure.protocol.ids import partition_key_of
from perdure.server.processor import identity


class Locality:
    def __init__(self, bits: int = 0, owned: Iterable[int] | None = None) -> None:
        assert 0 <= bits <= 16
        self.bits = bits
        self.count = 1 << bits
        self.owned: set[int] = set(range(self.count)) if owned is None else set(owned)
        self._choices: list[int] | None = None

    def of_pk(self, pk: int) -> int:
        return pk >> (64 - self.bits) if self.bits else 0

    def of_id(self, raw: bytes) -> int:
        return self.of_pk(int.from_bytes(raw[:8], "big"))

    def of_key(self, key: str) -> int:
        return self.of_pk(partition_key_of(key)) if self.bits else 0

    def owns_id(self, raw: bytes) -> bool:
        return self.of_id(raw) in self.owned

    def owns_key(self, key: str) -> bool:
        return self.of_key(key) in self.owned

    def owns_all(self) -> bool:
        return len(self.owned) == self.count

    def change(self, owned: Iterable[int]) -> None:
        self.owned = set(owned)
        self._choices = None

    def random_pk_in(self, partition: int) -> int:
        """A random partition key inside `partition` (a callee kept beside its caller)."""
        return self.pk_in(partition, identity.random_partition_key())  # type: ignore[attr-defined]

    def pk_in(self, partition: int, pk: int) -> int:
        """`pk` moved into `partition` (its low bits kept; unchanged with one partition)."""
        if not self.bits:
            return pk
        return (partition << (64 - self.bits)) | (pk & ((1 << (64 - self.bits)) - 1))

    def random_pk(self) -> int:
        """A random partition key inside an owned partition (new unkeyed invocations stay here)."""
        pk = identity.random_partition_key()  # type: ignore[attr-defined]  # seeded by the simulation
        if not self.bits or self.owns_all() or not self.owned:
            return pk  # (owning nothing: the invocation is refused as another partition's)
        if self._choices is None:
            self._choices = sorted(self.owned)
        low = pk & ((1 << (64 - self.bits)) - 1)
        return (self._choices[low % len(self._choices)] << (64 - self.bits)) | low
