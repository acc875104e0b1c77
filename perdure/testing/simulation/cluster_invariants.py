"""The cluster's invariants, on top of the single-node ones (which hold across nodes: one checker
sees every node's commits, releases and attempts):
- a batch takes effect only for the holder of an unexpired lease at the current epoch of every
  partition it writes, and a fenced batch changes nothing;
- no two nodes commit to the same partition at the same epoch;
- one exclusive handler per key runs at a time among nodes holding the key's lease (an attempt
  of a node that lost the lease is a zombie: nothing it sends can commit);
- right after a renewal (a paused node resumed), a node's processor covers exactly the leases it
  still holds: what it lost is dropped;
- every stored timer of a partition is armed on the node that owns it (after a takeover, the
  new owner fires the old owner's timers);
- at the end, no node holds a lock in memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perdure.server.processor.commands import Command, Invoke
from perdure.server.processor.identity import invocation_id_for
from perdure.testing.simulation.invariants import Checker
from perdure.testing.simulation.leased_store import id_partition
from perdure.testing.simulation.violation import Violation

if TYPE_CHECKING:
    from perdure.testing.simulation.cluster import ClusterWorld
    from perdure.testing.simulation.node import SimNode


class ClusterChecker(Checker):
    def __init__(self, world: ClusterWorld) -> None:
        super().__init__(world)  # type: ignore[arg-type]  # the cluster stands in for the world
        self.cw = world
        self.epoch_writer: dict[tuple[int, int], str] = {}  # (partition, epoch) -> committing node

    def before_apply(self, cmd: Command) -> None:
        """A request for a partition the node does not own is answered 503: nothing is accepted."""
        if isinstance(cmd, Invoke):
            t, ikey = cmd.request.target, cmd.request.idempotency_key
            owned = self.cw.current.processor.owned_partitions()
            if t.key is None and ikey is None:
                foreign = not owned
            else:
                foreign = id_partition(invocation_id_for(t, ikey, lambda: 0).raw, self.cw.bits) not in owned
            if foreign:
                return
        super().before_apply(cmd)

    def after_fenced_commit(self, node: SimNode, parts: list[int]) -> None:
        st = self.cw.storage
        now = self.cw.now_ms
        for p in parts:
            lease = st.leases[p]
            epoch = node.book.epochs[p]
            if lease.owner != node.name or lease.epoch != epoch or lease.expires_at_ms <= now:
                state = "live" if lease.expires_at_ms > now else "expired"
                raise Violation(
                    "a fenced node's commit changes nothing",
                    f"{node.name} committed to partition {p} at epoch {epoch}; the lease is "
                    f"{lease.owner} epoch {lease.epoch}, {state}",
                )
            writer = self.epoch_writer.setdefault((p, epoch), node.name)
            if writer != node.name:
                raise Violation(
                    "no two nodes commit to the same partition at the same epoch",
                    f"partition {p} epoch {epoch}: {writer} committed, now {node.name}",
                )

    def check_renewed(self, node: SimNode) -> None:
        """Right after a renewal, the node's processor covers exactly the leases it still holds."""
        st = self.cw.storage
        held = set(node.book.owned())
        for p in held:
            lease = st.leases[p]
            if (lease.owner, lease.epoch) != (node.name, node.book.epochs[p]):
                raise Violation(
                    "a node that lost a lease drops its partition",
                    f"{node.name} renewed partition {p} at epoch {node.book.epochs[p]}; "
                    f"the lease is {lease.owner}'s at epoch {lease.epoch}",
                )
        if node.processor.owned_partitions() != held:
            raise Violation(
                "a node that lost a lease drops its partition",
                f"{node.name} holds leases {sorted(held)}, its processor covers "
                f"{sorted(node.processor.owned_partitions())}",
            )

    def check_timers_armed(self) -> None:
        """Every stored timer is armed (or fired, queued) on its partition's live owner."""
        cw = self.cw
        st = cw.storage
        owners = cw.holders()
        for t in sorted(st.timers):
            node = owners.get(id_partition(t.invocation, cw.bits))
            if node is None or t in node.timers or node.fired(t):
                continue
            raise Violation(
                "timers of a partition are armed on its owner",
                f"timer {t.kind} of {self.token_name(t.invocation)} at {t.wake_at_ms} is stored in "
                f"partition {id_partition(t.invocation, cw.bits)} but not armed on its owner {node.name}",
            )

    def at_quiescence(self) -> None:
        for node in self.cw.nodes:
            if node.processor.locks():
                raise Violation(
                    "no key is left locked", f"{node.name} holds {sorted(node.processor.locks())}"
                )
        super().at_quiescence()
