"""The simulated cluster: N nodes, each with its own Processor and Locality, over ONE shared store
with PostgreSQL's lease table and fence (leased_store.py), on one simulated clock (the database's
and every node's). Leases are renewed on their cadence by every node that runs and reaches the
store; placement is the real `placement.plan`, applied as `ClusterNode.step` applies it (release:
relinquish, drain, hand back; acquire: take, adopt).

Each step picks one action at random: client traffic (routed to the lease owner, sometimes to a
stale node, which answers 503), a node's SDK, network or batch step, timers, a placement step, and
faults: a node pauses (sometimes with a batch in flight) past its lease and later resumes (its
in-flight batch must be fenced, then it drops what it lost), a node is killed (-9) and restarts,
a node cannot reach the store for a while (its lease expires; its own commits stop at the local
deadline), a commit fails, an admin terminates an invocation. The same seed always produces the
same run."""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from perdure.server.cluster.placement import Lease, plan
from perdure.server.processor.identity import invocation_id_for
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor
from perdure.testing.simulation.cluster_invariants import ClusterChecker
from perdure.testing.simulation.determinism import seeded_ids
from perdure.testing.simulation.leased_store import LeasedMemoryStorage, id_partition
from perdure.testing.simulation.node import DOWN, PAUSED, RUNNING, SimNode
from perdure.testing.simulation.schema import FLOW_KEYS, SIM_SCHEMA, SimSchema
from perdure.testing.simulation.sdk import SimAttempt
from perdure.testing.simulation.violation import Violation
from perdure.testing.simulation.world import (
    EPOCH_MS,
    TRACE_LINES_MAX,
    SimConfig,
    Stats,
    fingerprint_of,
    flow,
)


@dataclass(frozen=True, slots=True)
class ClusterConfig(SimConfig):
    nodes: int = 3
    bits: int = 2  # 4 partitions
    lease_ttl_ms: int = 3_000
    renew_ms: int = 1_000
    w_node: int = 60  # one node's SDK, network or batch step
    w_place: int = 4
    w_pause: int = 1
    w_resume: int = 2
    w_kill: int = 1
    w_restart: int = 2
    w_unreachable: int = 1
    stale_route_p: float = 0.1
    settle_rounds_max: int = 50


@dataclass(slots=True)
class ClusterStats(Stats):
    pauses: int = 0
    kills: int = 0
    unreachable: int = 0
    fenced: int = 0  # batches the store's fence refused
    refused_locally: int = 0  # batches not sent: the node's leases were past their local deadline
    takeovers: int = 0  # partitions acquired from another node's expired lease
    handovers: int = 0  # partitions released by placement (drained first)
    mail_rows: int = 0  # partition mailbox rows applied (cross-partition calls, sends, results)


class ClusterWorld:
    def __init__(
        self, seed: int, config: ClusterConfig | None = None, schema: SimSchema = SIM_SCHEMA
    ) -> None:
        self.seed = seed
        self.config = config or ClusterConfig()
        self.schema = schema
        self.bits = self.config.bits
        self.rng = random.Random(seed)
        self.id_rng = random.Random(seed * 7_919 + 17)
        self.now_ms = EPOCH_MS
        self.next_renew_ms = EPOCH_MS
        self.storage = LeasedMemoryStorage(self.bits, lambda: self.now_ms)
        self.known: dict[bytes, None] = {}
        self.idempotent_inputs: dict[tuple[str, str | None, str, str], bytes] = {}
        self.storage_fault_armed = False
        self.step_no = 0
        self.trace: deque[str] = deque(maxlen=TRACE_LINES_MAX)
        self.stats = ClusterStats()
        self.check = ClusterChecker(self)
        self._tokens = itertools.count(1)
        self._names = itertools.count(1)
        self.nodes = [SimNode(self, f"n{i}") for i in range(self.config.nodes)]
        self.current = self.nodes[0]
        self.quiescing = False

    # ------------------------------------------------------------------ what the checker sees

    @property
    def processor(self) -> Processor:
        return self.current.processor

    @property
    def attempts(self) -> dict[bytes, SimAttempt]:
        """Live attempts: the acting node's, and those of nodes holding their partition's lease."""
        holders = self.holders()
        out: dict[bytes, SimAttempt] = {}
        for node in self.nodes:
            if node is self.current:
                continue
            for raw, a in node.attempts.items():
                if holders.get(id_partition(raw, self.bits)) is node:
                    out[raw] = a
        out.update(self.current.attempts)
        return out

    def holders(self) -> dict[int, SimNode]:
        """Partition -> the running node holding its live lease at the current epoch."""
        out = {}
        for p, lease in enumerate(self.storage.leases):
            for node in self.nodes:
                if (
                    node.state == RUNNING
                    and lease.owner == node.name
                    and lease.expires_at_ms > self.now_ms
                    and node.book.epochs[p] == lease.epoch
                    and p in node.processor.owned_partitions()
                ):
                    out[p] = node
        return out

    def fingerprint(self) -> str:
        return fingerprint_of(self.storage, self.step_no, self.now_ms)

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        with seeded_ids(self.id_rng):
            for node in self.nodes:
                self.current = node
                node.recover()
            self.settle()
            for _ in range(self.config.steps):
                self.step_no += 1
                self.step()
                self.check.check_timers_armed()
            self.quiesce()

    def running(self) -> list[SimNode]:
        return [n for n in self.nodes if n.state == RUNNING]

    def step(self) -> None:
        c = self.config
        actions: list[Callable[[], None]] = [self.act_submit, self.act_storage_fault]
        weights = [c.w_submit, c.w_storage_fault]
        running = self.running()
        busy = [n for n in running if self._node_actions(n)]
        if busy:
            actions.append(lambda: self.act_node(busy))
            weights.append(c.w_node)
        if running:
            actions += [self.act_place, self.act_pause, self.act_kill, self.act_unreachable]
            weights += [c.w_place, c.w_pause, c.w_kill, c.w_unreachable]
        if any(n.timers for n in running):
            actions.append(self.act_timer)
            weights.append(c.w_timer)
        if any(n.state == PAUSED for n in self.nodes):
            actions.append(self.act_resume)
            weights.append(c.w_resume)
        if any(n.state == DOWN for n in self.nodes):
            actions.append(self.act_restart)
            weights.append(c.w_restart)
        if self.known and running:
            actions.append(self.act_terminate)
            weights.append(c.w_terminate)
        action = self.rng.choices(actions, weights)[0]
        self.advance(self.now_ms + self.rng.randint(0, 2))
        action()

    def _node_actions(self, n: SimNode) -> list[tuple[Callable[[], None], int]]:
        c = self.config
        out: list[tuple[Callable[[], None], int]] = []
        if any(a.outbound for a in n.attempts.values()):
            out.append((n.act_deliver, c.w_deliver))
        if any(a.runnable() for a in n.attempts.values()):
            out.append((n.act_sdk, c.w_sdk))
        if n.queue:
            out.append((n.act_batch, c.w_batch))
        if n.mail_waiting():
            out.append((n.act_mail, c.w_deliver))
        return out

    def act_node(self, busy: list[SimNode]) -> None:
        node = self.rng.choice(busy)
        self.current = node
        options = self._node_actions(node)
        self.rng.choices([f for f, _ in options], [w for _, w in options])[0]()

    # ------------------------------------------------------------------ clock and leases

    def advance(self, to_ms: int) -> None:
        """Move the clock; every running node that reaches the store renews on its cadence (and
        follows at once when a renewal finds a lease lost, as ClusterNode's placement task does)."""
        while self.next_renew_ms <= to_ms:
            self.now_ms = max(self.now_ms, self.next_renew_ms)
            for node in self.running():
                if node.reachable():
                    self.current = node
                    if node.renew():
                        node.sync()
                    self.check.check_renewed(node)
            self.next_renew_ms += self.config.renew_ms
        self.now_ms = max(self.now_ms, to_ms)

    def place(self, node: SimNode) -> bool:
        """ClusterNode.step: one move towards the placement; whether anything moved."""
        st = self.storage
        ttl = self.config.lease_ttl_ms
        if not node.reachable():
            return False
        self.current = node
        nodes = st.live_nodes(ttl)
        if node.name not in nodes:
            return False
        leases = [Lease(lease.owner, st.live(p)) for p, lease in enumerate(st.leases)]
        step = plan(node.name, nodes, leases, set(node.book.owned()), max(1, len(leases) // 8))
        if step.release:
            dropped = node.book.drop(step.release)  # no batch writes them from here on
            node.sync()  # drained: state forgotten, attempts aborted
            st.release(node.name, dropped)
            self.stats.handovers += len(dropped)
            self.trace.append(f"{self.step_no} {node.name}: released {step.release}")
        if not step.acquire:
            return bool(step.release)
        before = {p: (st.leases[p].owner, st.live(p)) for p in step.acquire}
        taken = st.acquire(node.name, step.acquire, ttl)
        for p, epoch in taken:
            node.book.held(p, epoch, node.now_s())
            owner, live = before[p]
            self.stats.takeovers += owner not in (None, node.name) and not live
        if taken:
            self.trace.append(f"{self.step_no} {node.name}: took {taken}")
            node.sync()
        return bool(taken or step.release)

    def settle(self) -> None:
        """Placement steps on every node until nothing moves and every partition is held."""
        for _ in range(self.config.settle_rounds_max):
            moved = False
            for node in self.running():
                moved |= self.place(node)
            if not moved and len(self.holders()) == len(self.storage.leases):
                return
            self.advance(self.now_ms + self.config.renew_ms)
        raise Violation("placement settles", f"leases {self.storage.leases}")

    # ------------------------------------------------------------------ clients and admin

    def route(self, partition: int | None) -> SimNode | None:
        """The router: the lease owner as last seen (sometimes a stale node), else any running node."""
        running = self.running()
        if not running:
            return None
        if partition is None or (not self.quiescing and self.rng.random() < self.config.stale_route_p):
            return self.rng.choice(running)
        owner = self.storage.leases[partition].owner
        node = next((n for n in self.nodes if n.name == owner and n.state != DOWN), None)
        return node or self.rng.choice(running)

    def route_target(self, target: Target, ikey: str | None) -> SimNode | None:
        keyed = target.key is not None or ikey is not None
        raw = invocation_id_for(target, ikey, lambda: 0).raw if keyed else None
        return self.route(None if raw is None else id_partition(raw, self.bits))

    def act_submit(self) -> None:
        node = self.rng.choice(self.nodes)
        node.act_submit()  # its plan; submit() routes it

    def act_terminate(self) -> None:
        raw = self.rng.choice(list(self.known))
        node = self.route(id_partition(raw, self.bits))
        if node is not None:
            node.terminate(raw)

    def act_timer(self) -> None:
        """Jump the clock to the earliest timer armed on a running node; due timers fire."""
        running = self.running()
        self.advance(min(t.wake_at_ms for n in running for t in n.timers))
        for node in running:
            if node.timers and node.state == RUNNING:
                node.fire_due()
        self.trace.append(f"{self.step_no} timers fired at {self.now_ms - EPOCH_MS}ms")

    def act_place(self) -> None:
        self.place(self.rng.choice(self.running()))

    def act_storage_fault(self) -> None:
        self.nodes[0].act_storage_fault()  # the store and its armed flag are the cluster's

    # ------------------------------------------------------------------ node faults

    def act_pause(self) -> None:
        """SIGSTOP past the lease: sometimes with a batch taken and checked, not yet sent."""
        node = self.rng.choice(self.running())
        self.current = node
        if node.queue and self.rng.random() < 0.5:
            node.take_in_flight(self.rng.randint(1, len(node.queue)))
        node.state = PAUSED
        self.stats.pauses += 1
        self.trace.append(
            f"{self.step_no} {node.name}: paused (batch in flight: {node.in_flight is not None})"
        )
        self.advance(self.now_ms + self.config.lease_ttl_ms + self.rng.randint(1, 2_000))

    def act_resume(self) -> None:
        node = self.rng.choice([n for n in self.nodes if n.state == PAUSED])
        self.resume(node)

    def resume(self, node: SimNode) -> None:
        """SIGCONT: the batch in flight reaches the store (the fence decides), then the renewal
        finds what was lost and the processor drops it."""
        self.current = node
        node.state = RUNNING
        self.trace.append(f"{self.step_no} {node.name}: resumed")
        node.send_in_flight()
        if node.reachable():
            if node.renew():
                node.sync()
            self.check.check_renewed(node)

    def act_kill(self) -> None:
        node = self.rng.choice(self.running())
        node.kill()
        self.stats.kills += 1
        self.trace.append(f"{self.step_no} {node.name}: killed")

    def act_restart(self) -> None:
        node = self.rng.choice([n for n in self.nodes if n.state == DOWN])
        self.current = node
        node.restart()
        self.trace.append(f"{self.step_no} {node.name}: restarted")

    def act_unreachable(self) -> None:
        """The store is unreachable from one node past its lease: renewals fail, its leases run
        out on the database clock, its local deadline stops its own commits."""
        node = self.rng.choice(self.running())
        node.renewals_blocked_until = self.now_ms + self.config.lease_ttl_ms + self.rng.randint(1, 2_000)
        self.stats.unreachable += 1
        self.trace.append(f"{self.step_no} {node.name}: store unreachable")

    # ------------------------------------------------------------------ the end

    def heal(self) -> None:
        self.storage.fail_next_commit = False
        self.storage_fault_armed = False
        for node in self.nodes:
            node.renewals_blocked_until = 0
            if node.state == PAUSED:
                self.resume(node)
            elif node.state == DOWN:
                self.current = node
                node.restart()

    def quiesce(self) -> None:
        """Heal every fault, let placement settle, then run without faults until nothing is left."""
        self.heal()
        self.settle()
        self.quiescing = True  # requests go straight to the owner (no stale route: these must land)
        for key in FLOW_KEYS:
            self.nodes[0].submit(flow("signal", key), f"q{key}|".encode(), "send")
        for _ in range(self.config.quiesce_steps_max):
            self.step_no += 1
            if not self.quiesce_step():
                break
            self.check.check_timers_armed()
        else:
            raise Violation("the system quiesces", f"still busy after {self.config.quiesce_steps_max} steps")
        self.trace.append(f"{self.step_no} quiescent at {self.now_ms - EPOCH_MS}ms")
        self.current = self.nodes[0]
        self.check.at_quiescence()

    def quiesce_step(self) -> bool:
        for node in self.running():
            self.current = node
            if node.work_step():
                return True
            if node.mail_waiting():
                node.act_mail()
                return True
        timers = [t.wake_at_ms for n in self.running() for t in n.timers]
        if timers:
            self.act_timer()
            return True
        return self.place_round()

    def place_round(self) -> bool:
        moved = False
        for node in self.running():
            moved |= self.place(node)
        return moved
