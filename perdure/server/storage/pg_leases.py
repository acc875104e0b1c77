"""A node's partition leases on PostgreSQL: what it holds (epochs, local deadlines) and the SQL
that registers, heartbeats, renews, acquires and releases them. Expiry is always computed on the
database clock (`now()`); the local deadline (monotonic clock, from the time a renewal was *sent*)
only stops this node committing early when it cannot renew. Safety comes from the fence in
`perdure_commit`, never from these timers."""

from __future__ import annotations

import time
from dataclasses import dataclass

LEASE_MARGIN_S = 1.0  # the local deadline runs out this long before the database's expiry

# Heartbeat and renewal in one statement: the node row's heartbeat and every lease this node
# holds at the epoch it holds it (a lease whose epoch moved on was taken by another node).
HEARTBEAT_RENEW_SQL = (
    "WITH hb AS (INSERT INTO cluster_node (name, address, heartbeat_at) VALUES ($1, $5, now()) "
    "ON CONFLICT (name) DO UPDATE SET heartbeat_at = now(), address = excluded.address) "
    "UPDATE partition_lease l SET expires_at = now() + make_interval(secs => $3) "
    "FROM unnest($2::integer[], $4::bigint[]) AS o(p, e) "
    "WHERE l.partition = o.p AND l.epoch = o.e AND l.owner = $1 RETURNING l.partition"
)
# A free, expired or (a restart of this node) own lease: a new epoch fences every older holder.
ACQUIRE_SQL = (
    "UPDATE partition_lease SET owner = $1, owner_addr = $2, epoch = epoch + 1, "
    "expires_at = now() + make_interval(secs => $3), last_batch = 0 "
    "WHERE partition = ANY($4::integer[]) AND (owner IS NULL OR owner = $1 OR expires_at <= now()) "
    "RETURNING partition, epoch"
)
RELEASE_SQL = (
    "UPDATE partition_lease l SET owner = NULL, owner_addr = NULL, expires_at = now() "
    "FROM unnest($2::integer[], $3::bigint[]) AS o(p, e) "
    "WHERE l.partition = o.p AND l.epoch = o.e AND l.owner = $1"
)
LEAVE_SQL = "DELETE FROM cluster_node WHERE name = $1"
LIVE_NODES_SQL = (
    "SELECT name, address, extract(epoch FROM now() - heartbeat_at)::float8 AS age_s FROM cluster_node "
    "WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY name"
)
LEASES_SQL = (
    "SELECT partition, owner, epoch, (owner IS NOT NULL AND expires_at > now()) AS live, "
    "extract(epoch FROM expires_at - now())::float8 AS expires_in_s FROM partition_lease ORDER BY partition"
)


@dataclass(frozen=True, slots=True)
class LeaseRow:
    partition: int
    owner: str | None
    epoch: int
    live: bool  # held and unexpired (database clock)
    expires_in_s: float | None = None  # when it was read (database clock; negative: expired)


@dataclass(frozen=True, slots=True)
class NodeRow:
    name: str
    address: str | None
    heartbeat_age_s: float


class LeaseBook:
    """The leases this node holds: epoch per partition (0: not held) and local deadlines."""

    def __init__(self, partitions: int, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.epochs = [0] * partitions
        self._deadlines = [0.0] * partitions
        self.deadline = 0.0  # the earliest deadline of a held lease (inf: none held)

    def owned(self) -> list[int]:
        return [p for p, e in enumerate(self.epochs) if e]

    def held(self, partition: int, epoch: int, sent: float) -> None:
        self.epochs[partition] = epoch
        self._deadlines[partition] = sent + self.ttl_s - LEASE_MARGIN_S
        self._recompute()

    def renewed(self, sent_for: list[tuple[int, int]], kept: set[int], sent: float) -> list[int]:
        """A renewal of `sent_for` (partition, epoch), sent at `sent`, kept `kept`; the others are
        lost (returned) unless this node's holding changed while the renewal was in flight (a
        partition relinquished, or taken again with a newer epoch)."""
        lost = [p for p, e in sent_for if p not in kept and self.epochs[p] == e]
        for p in lost:
            self.epochs[p] = 0
        for p, e in sent_for:
            if p in kept and self.epochs[p] == e:
                self._deadlines[p] = sent + self.ttl_s - LEASE_MARGIN_S
        self._recompute()
        return lost

    def drop(self, partitions: list[int]) -> list[tuple[int, int]]:
        """Stop holding `partitions` here (no batch passes their fence again); (partition, epoch)."""
        dropped = [(p, self.epochs[p]) for p in partitions if self.epochs[p]]
        for p, _ in dropped:
            self.epochs[p] = 0
        self._recompute()
        return dropped

    def deadline_of(self, partition: int) -> float:
        return self._deadlines[partition]

    def expired_locally(self) -> bool:
        return time.monotonic() > self.deadline

    def _recompute(self) -> None:
        held = [self._deadlines[p] for p in self.owned()]
        self.deadline = min(held) if held else float("inf")
