"""Where the partitions should live (sans-IO): every node computes the same answer from the
same list of live nodes, so no node has to tell another what to do.

Rendezvous hashing with bounded load: each partition ranks the nodes by a hash of (node,
partition) and goes to the first one with room left (P/N rounded up for the first P mod N
nodes by name, down for the others), so the placement is balanced to within one partition
and a node joining or leaving moves few of them.
Partitions move only by release and acquisition of leases: a node takes a partition placed on
it only when its lease is free or expired, and gives up one placed elsewhere (at most
`moves_max` per step) once the node it belongs to is live; a dead node's leases simply expire."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


def _score(node: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{node}/{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def place(partitions: int, nodes: Sequence[str]) -> list[str | None]:
    """The node each partition belongs on (None when no node is live)."""
    names = sorted(set(nodes))
    if not names:
        return [None] * partitions
    base, extra = divmod(partitions, len(names))
    room = {name: base + (1 if i < extra else 0) for i, name in enumerate(names)}  # sums to P
    out: list[str | None] = []
    for p in range(partitions):
        for name in sorted(names, key=lambda n: _score(n, p), reverse=True):
            if room[name] > 0:
                room[name] -= 1
                out.append(name)
                break
    return out


@dataclass(frozen=True, slots=True)
class Lease:
    owner: str | None
    live: bool  # held and unexpired on the database clock


@dataclass(frozen=True, slots=True)
class Plan:
    acquire: list[int]  # free or expired leases placed on this node
    release: list[int]  # held here, placed on another live node


def plan(me: str, nodes: Sequence[str], leases: Sequence[Lease], held: set[int], moves_max: int) -> Plan:
    """This node's next step towards the placement."""
    target = place(len(leases), [*nodes, me])
    acquire = [
        p
        for p, lease in enumerate(leases)
        if target[p] == me and p not in held and (not lease.live or lease.owner == me)
    ]
    release = [p for p in sorted(held) if target[p] != me][: max(0, moves_max)]
    return Plan(acquire, release)
