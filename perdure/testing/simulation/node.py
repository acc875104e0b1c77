"""One simulated cluster node: its own Processor (with a `Locality`), command queue, armed timers,
SDK attempts, waiting clients and lease book (pg_leases.LeaseBook), over the cluster's shared
store. It runs the single-node world's machinery (`World`'s batch, release, SDK and network steps)
with the cluster's clock, seed and checker; what differs is the commit (fenced by its lease epochs,
refused locally past the lease's local deadline), the processor's rebuild after a failed commit
(leases revalidated first, as `Runtime._restart_processor`), and partition changes
(`sync`: drop, then adopt, as `Runtime._apply_ownership`)."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import CheckMailbox, Command, Timer, TimerFired
from perdure.server.processor.effects import Effect
from perdure.server.processor.locality import Locality
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor
from perdure.server.storage.interface import StorageError
from perdure.server.storage.pg_leases import LeaseBook
from perdure.server.storage.postgres import FencedError
from perdure.testing.simulation import programs as pg
from perdure.testing.simulation.invariants import ClientRequest
from perdure.testing.simulation.sdk import SimAttempt
from perdure.testing.simulation.violation import Violation
from perdure.testing.simulation.world import World

if TYPE_CHECKING:
    from perdure.testing.simulation.cluster import ClusterWorld

RUNNING, PAUSED, DOWN = "running", "paused", "down"


class _Shared:
    """An attribute of the single-node world that a node shares with its cluster."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, node: Any, owner: type | None = None) -> Any:
        return getattr(node.cluster, self.name)

    def __set__(self, node: Any, value: Any) -> None:
        setattr(node.cluster, self.name, value)


class SimNode(World):
    greet_steps = pg.GREET_STEPS  # calls and sends to keys of other nodes' partitions: the mailbox

    # The cluster's: one seed, clock, store, checker and trace for every node.
    rng = _Shared()
    config = _Shared()
    schema = _Shared()
    storage = _Shared()
    check = _Shared()
    stats = _Shared()
    trace = _Shared()
    step_no = _Shared()
    now_ms = _Shared()
    known = _Shared()
    idempotent_inputs = _Shared()
    storage_fault_armed = _Shared()
    _tokens = _Shared()
    _names = _Shared()

    def __init__(self, cluster: ClusterWorld, name: str) -> None:  # World.__init__ is the cluster's
        self.cluster = cluster
        self.name = name
        self.state = RUNNING
        self.renewals_blocked_until = 0  # the database is unreachable from this node until then
        self.book = LeaseBook(1 << cluster.bits, cluster.config.lease_ttl_ms / 1000)
        self.in_flight: tuple[WriteBatch, list[Effect], list[Any], list[Any]] | None = None
        self.seq = 0
        self._fresh()
        self.processor = self._new_processor()

    def _fresh(self) -> None:
        """Everything volatile, empty (a new process, or the processor rebuilt after a failure)."""
        self.queue: deque[Command] = deque()
        self.timers: dict[Timer, None] = {}
        self.attempts: dict[bytes, SimAttempt] = {}
        self.clients: dict[int, ClientRequest] = {}
        self.in_flight = None

    def _new_processor(self) -> Processor:
        loc = Locality(self.cluster.bits, set(self.book.owned()))
        return Processor(self.cluster.storage, self.cluster.schema, locality=loc)

    # ------------------------------------------------------------------ clients go through the router

    def entry(self, target: Target, ikey: str | None) -> World | None:
        return self.cluster.route_target(target, ikey)

    # ------------------------------------------------------------------ the fenced commit

    def now_s(self) -> float:
        return self.cluster.now_ms / 1000

    def write(self, batch: WriteBatch) -> None:
        """The batch passes this node's local lease deadline (checked before it is sent, so not
        again for a batch in flight), then the store's fence."""
        if self.in_flight is None and self.now_s() > self.book.deadline:  # PostgresStorage's check
            self.cluster.stats.refused_locally += 1
            raise FencedError("the leases are past their local deadline (not renewed)")
        st = self.cluster.storage
        self.seq += 1
        commits = st.commits
        try:
            parts = st.commit_fenced(self.name, self.book.epochs, self.seq, batch, self.check.before_commit)
        except FencedError as exc:
            if st.commits != commits:
                raise Violation("a fenced node's commit changes nothing", str(exc)) from None
            self.cluster.stats.fenced += 1
            raise
        self.cluster.check.after_fenced_commit(self, parts)
        self.cluster.stats.mail_rows += len(batch.mail_done)

    def commit_failed(self, exc: StorageError) -> None:
        if not isinstance(exc, FencedError):
            super().commit_failed(exc)
            return
        self.trace.append(f"{self.step_no} {self.name}: batch refused ({exc})")

    def take_in_flight(self, n: int) -> None:
        """Apply `n` commands and take their batch, checked against the local deadline and not
        sent yet: a pause now leaves it in flight (sent on resume)."""
        self.apply_queued(n)
        batch, effects = self.processor.take()
        if not batch or self.now_s() > self.book.deadline:
            if self.commit(batch):
                self.processor.committed()
                self.release(effects)
            return
        check = self.check
        self.in_flight = (batch, effects, check.pending_accepts[:], check.pending_delayed[:])
        check.pending_accepts.clear()
        check.pending_delayed.clear()

    def send_in_flight(self) -> None:
        if self.in_flight is None:
            return
        batch, effects, accepts, delayed = self.in_flight
        self.check.pending_accepts[:] = accepts
        self.check.pending_delayed[:] = delayed
        if self.commit(batch):  # (crash() empties in_flight)
            self.in_flight = None
            self.processor.committed()
            self.release(effects)

    def mail_waiting(self) -> bool:
        """Mailbox rows wait for a partition this node's processor owns, and no `CheckMailbox` is
        queued yet (the node's mailbox task: NOTIFY or its poll, `cluster/mailbox.py`)."""
        if any(isinstance(c, CheckMailbox) for c in self.queue):
            return False
        box = self.cluster.storage.mailbox
        return any(box.get(p) for p in self.processor.owned_partitions())

    def act_mail(self) -> None:
        self.queue.append(CheckMailbox(0))
        self.trace.append(f"{self.step_no} {self.name}: mailbox checked")

    def fired(self, t: Timer) -> bool:
        return any(isinstance(c, TimerFired) and c.timer == t for c in self.queue)

    # ------------------------------------------------------------------ failures

    def crash(self) -> None:
        """A failed commit: pending work fails, leases are revalidated, the processor is rebuilt
        over the partitions still held (Runtime.run / _restart_processor)."""
        self.stats.crashes += 1
        self._fresh()
        self.check.on_crash()
        self.revalidate()
        self.recover()

    def recover(self) -> None:
        self.processor = self._new_processor()
        owned = self.processor.owned_partitions()
        self.check.note_mail(self, sorted(owned))
        try:
            self.processor.recover(self.cluster.storage.recovery_for(owned), self.now_ms)
        except Exception as exc:
            raise Violation("the processor recovers from any committed state", repr(exc)) from exc
        self.flush(recovered=True)

    def flush(self, recovered: bool = False) -> None:
        batch, effects = self.processor.take()
        if self.commit(batch):  # on failure, commit() rebuilt the processor
            self.processor.committed()
            if recovered:
                self.check.after_recover()
            self.release(effects)

    def kill(self) -> None:
        """kill -9: the process and everything volatile are gone; its leases run out on the store."""
        self.state = DOWN
        self._fresh()
        self.check.on_crash()
        self.book = LeaseBook(len(self.book.epochs), self.book.ttl_s)

    def restart(self) -> None:
        """A new process: no lease held, an empty processor; placement gives it partitions."""
        self.state = RUNNING
        self.renewals_blocked_until = 0
        self.recover()

    # ------------------------------------------------------------------ leases and partitions

    def reachable(self) -> bool:
        return self.cluster.now_ms >= self.renewals_blocked_until

    def renew(self) -> list[int]:
        """HEARTBEAT_RENEW_SQL through the lease book; returns the partitions lost."""
        owned = self.book.owned()
        sent_for = [(p, self.book.epochs[p]) for p in owned]
        kept = self.cluster.storage.heartbeat_renew(self.name, sent_for, self.cluster.config.lease_ttl_ms)
        return self.book.renewed(sent_for, kept, self.now_s())

    def revalidate(self) -> list[int]:
        """PostgresStorage.revalidate: renew, or (unreachable) drop leases past their deadline."""
        if self.reachable():
            return self.renew()
        stale = [p for p in self.book.owned() if self.book.deadline_of(p) < self.now_s()]
        self.book.drop(stale)
        return stale

    def sync(self) -> None:
        """Runtime._apply_ownership: the processor covers exactly the partitions held now."""
        want = set(self.book.owned())
        have = self.processor.owned_partitions()
        if have - want:
            self.processor.drop_partitions(have - want)
            self.trace.append(f"{self.step_no} {self.name}: dropped partitions {sorted(have - want)}")
        if want - have:
            add = want - have
            self.check.note_mail(self, sorted(add))
            try:
                self.processor.adopt_partitions(add, self.cluster.storage.recovery_for(add), self.now_ms)
            except Exception as exc:
                raise Violation("the processor recovers from any committed state", repr(exc)) from exc
            self.trace.append(f"{self.step_no} {self.name}: adopted partitions {sorted(add)}")
        self.flush()
