"""One shared in-memory store for several simulated nodes, with the lease table and the fence of
the PostgreSQL store (migrations 0002/0005/0007, pg_leases.py): a lease row per partition
(owner, epoch, expiry on the database clock), node heartbeats, and a commit that first writes the
lease row of every partition the batch touches, conditionally on owner + epoch + unexpired; if any
row does not match, the whole batch is rejected (FencedError) and nothing of it is applied. A batch
that writes only global tables is fenced on one partition the node holds (its anchor), as
`PostgresStorage.commit_batch` does. Acquisition bumps the epoch; renewal and release match the
epoch; the clock is the simulation's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from perdure.protocol.ids import partition_key_of
from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import Invocation
from perdure.server.storage.memory import MemoryStorage
from perdure.server.storage.pg_batch import GLOBAL_OPS, anchor_partition, batch_ids
from perdure.server.storage.postgres import FencedError


@dataclass(slots=True)
class LeaseRecord:
    owner: str | None = None
    epoch: int = 0
    expires_at_ms: int = 0
    last_batch: int = 0


def id_partition(raw: bytes, bits: int) -> int:
    return int.from_bytes(raw[:2], "big") >> (16 - bits) if bits else 0


def key_partition(key: str, bits: int) -> int:
    return partition_key_of(key) >> (64 - bits) if bits else 0


def touched_partitions(b: WriteBatch, bits: int) -> set[int]:
    """The partitions perdure_commit fences for this batch (ids, timers, keyed operations), and
    perdure_mail those of the mailbox rows it applied."""
    out = {id_partition(raw, bits) for raw in batch_ids(b)}
    out.update(partition for partition, _ in b.mail_done)  # the mailbox DELETE is fenced too
    out.update(key_partition(args[1], bits) for kind, args in b.ops if kind not in GLOBAL_OPS)
    out.update(p for p, _ in b.mail_done)  # perdure_mail fences the mailbox rows a batch applies
    return out


class LeasedMemoryStorage(MemoryStorage):
    def __init__(self, bits: int, clock: Callable[[], int]) -> None:
        super().__init__()
        self.bits = bits
        self.clock = clock  # the database clock (ms)
        self.leases = [LeaseRecord() for _ in range(1 << bits)]
        self.heartbeats: dict[str, int] = {}  # node -> heartbeat time
        self.rejected = 0  # batches the fence refused

    # ------------------------------------------------------------------ the fence

    def commit_fenced(
        self,
        owner: str,
        epochs: list[int],
        seq: int,
        batch: WriteBatch,
        checked: Callable[[WriteBatch], None],
    ) -> list[int]:
        """Commit `batch` for `owner` holding `epochs`; returns the partitions it fenced. Raises
        FencedError (nothing applied) when a touched partition's lease is not owner's at that
        epoch and unexpired now; `checked` sees a batch that passed the fence before it applies."""
        parts = touched_partitions(batch, self.bits)
        if not parts:
            assert anchor_partition(batch, self.bits) is None
            owned = [p for p, e in enumerate(epochs) if e]
            if not owned:
                self.rejected += 1
                raise FencedError("simulated: this node owns no partition")
            parts = {owned[0]}
        now = self.clock()
        if not all(self._fence_holds(self.leases[p], owner, epochs[p], now) for p in sorted(parts)):
            self.rejected += 1
            raise FencedError(f"simulated: the lease of a partition this batch writes is no longer {owner}'s")
        checked(batch)  # the fence passed: what the batch writes is checked against the store
        self.commit_sync(batch)  # an injected failure raises here: the fence rows roll back with it
        for p in parts:
            self.leases[p].last_batch = seq
        return sorted(parts)

    def _fence_holds(self, lease: LeaseRecord, owner: str, epoch: int, now_ms: int) -> bool:
        return lease.owner == owner and lease.epoch == epoch and lease.expires_at_ms > now_ms

    # ------------------------------------------------------------------ leases (pg_leases.py's SQL)

    def heartbeat_renew(self, node: str, held: list[tuple[int, int]], ttl_ms: int) -> set[int]:
        """HEARTBEAT_RENEW_SQL: the node's heartbeat, and every lease it holds at its epoch."""
        now = self.clock()
        self.heartbeats[node] = now
        kept = set()
        for p, e in held:
            lease = self.leases[p]
            if lease.owner == node and lease.epoch == e:
                lease.expires_at_ms = now + ttl_ms
                kept.add(p)
        return kept

    def acquire(self, node: str, partitions: list[int], ttl_ms: int) -> list[tuple[int, int]]:
        """ACQUIRE_SQL: free, expired or own leases, each with a new epoch."""
        now = self.clock()
        taken = []
        for p in partitions:
            lease = self.leases[p]
            if lease.owner is None or lease.owner == node or lease.expires_at_ms <= now:
                self._take(lease, node, now + ttl_ms)
                taken.append((p, lease.epoch))
        return taken

    def _take(self, lease: LeaseRecord, node: str, expires_at_ms: int) -> None:
        lease.owner = node
        lease.epoch += 1
        lease.expires_at_ms = expires_at_ms
        lease.last_batch = 0

    def release(self, node: str, dropped: list[tuple[int, int]]) -> None:
        """RELEASE_SQL: hand back leases held at these epochs (expired now)."""
        for p, e in dropped:
            lease = self.leases[p]
            if lease.owner == node and lease.epoch == e:
                lease.owner = None
                lease.expires_at_ms = self.clock()

    def live_nodes(self, ttl_ms: int) -> list[str]:
        """LIVE_NODES_SQL: heartbeat younger than a lease lifetime."""
        now = self.clock()
        return sorted(n for n, at in self.heartbeats.items() if at > now - ttl_ms)

    def live(self, p: int) -> bool:
        lease = self.leases[p]
        return lease.owner is not None and lease.expires_at_ms > self.clock()

    def recovery_for(self, partitions: set[int]) -> ScopedRecovery:
        return ScopedRecovery(self, partitions)


class ScopedRecovery:
    """What a node adopting `partitions` loads (those partitions only), as `Scoped` in pg_reader.py;
    rules are cluster-wide and loaded at a processor's start only."""

    def __init__(self, store: LeasedMemoryStorage, partitions: set[int]) -> None:
        self._store = store
        self._parts = set(partitions)

    def _mine_id(self, raw: bytes) -> bool:
        return id_partition(raw, self._store.bits) in self._parts

    def _mine_key(self, key: str) -> bool:
        return key_partition(key, self._store.bits) in self._parts

    def load_running(self) -> list[Invocation]:
        return [inv for inv in self._store.load_running() if self._mine_id(inv.id.raw)]

    def load_locks(self) -> dict[tuple[str, str], bytes]:
        return {k: v for k, v in self._store.load_locks().items() if self._mine_key(k[1])}

    def load_inbox(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        return {k: v for k, v in self._store.load_inbox().items() if self._mine_key(k[1])}

    def load_timers(self, limit: int) -> list[Timer]:
        return [t for t in sorted(self._store.timers) if self._mine_id(t.invocation)][:limit]

    def load_limits(
        self,
    ) -> tuple[list[tuple[str, bytes, int]], list[tuple[bytes, int, int, str, str, str | None]]]:
        return [], []

    def load_schedules(self) -> list[bytes]:
        return self._store.load_schedules()  # every one: the processor keeps its partitions
