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
- every mailbox row is applied once (the store refuses a second delete) and, at the end, none is
  left: every cross-partition call, send, signal and result was delivered;
- at the end, no node holds a lock in memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.server.processor import mail
from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import CheckMailbox, Command, Invoke, SdkMessage
from perdure.server.processor.identity import invocation_id_for
from perdure.server.processor.mail import MailInvoke
from perdure.server.processor.mailbox import MAIL_READ_MAX
from perdure.testing.simulation.invariants import ADD, Checker
from perdure.testing.simulation.leased_store import id_partition
from perdure.testing.simulation.programs import token_of
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
        elif isinstance(cmd, SdkMessage) and cmd.type in (T.CALL, T.ONE_WAY_CALL):
            # A call to a key of another partition is accepted when its owner applies the
            # mailbox row, not when the caller's batch writes it.
            msg = decode(cmd.type, cmd.body)
            loc = self.cw.current.processor._loc
            if msg.key and not loc.owns_key(msg.key):
                return
        elif isinstance(cmd, CheckMailbox):
            self.note_mail(self.cw.current, sorted(self.cw.current.processor.owned_partitions()))
        super().before_apply(cmd)

    def note_mail(self, node: SimNode, parts: list[int]) -> None:
        """The Counter.add invocations the mailbox rows of `parts` create when `node` applies them
        (a check, an adoption or a recovery), in the order the processor reads them."""
        taken = node.processor._mail_taken
        st = self.cw.storage
        for partition, seq, body in st.read_mailbox(parts, MAIL_READ_MAX):
            m = mail.decode(body)
            if (partition, seq) in taken or not isinstance(m, MailInvoke):
                continue
            req, raw = m.request, m.id.raw
            if raw in node.processor.resident() or raw in st.invocations:
                continue  # a duplicate: attaches to the existing invocation
            name = token_of(req.input)
            if req.execution_time_ms is not None and req.execution_time_ms > self.cw.now_ms:
                self.pending_delayed.append((name, req.execution_time_ms))
            elif (req.target.service, req.target.handler) == ADD and req.target.key is not None:
                self.pending_accepts.append((req.target.key, name))

    def before_commit(self, batch: WriteBatch) -> None:
        box = self.cw.storage.mailbox
        if len(set(batch.mail_done)) != len(batch.mail_done) or any(
            seq not in box.get(p, {}) for p, seq in batch.mail_done
        ):
            raise Violation("every mailbox row is applied once", f"batch applies {batch.mail_done}")
        super().before_commit(batch)

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
        left = {p: len(rows) for p, rows in self.cw.storage.mailbox.items() if rows}
        if left:
            raise Violation("every mailbox row is delivered", f"rows left per partition: {left}")
        super().at_quiescence()
