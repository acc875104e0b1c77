"""A cluster node's lease keeper: one task that, every renewal interval, heartbeats and renews
this node's leases (one statement), reads the live nodes and the leases, and takes one step
towards the placement (`placement.plan`): acquire free or expired leases placed here, and
drain-then-release (rate-limited) those placed on another live node. The runtime's processor
follows every change (`Runtime.sync_partitions`): a partition is adopted after its lease is
taken and dropped before its lease is handed back."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from perdure.server.cluster.mailbox import MailboxTask
from perdure.server.cluster.placement import Lease, plan
from perdure.server.runtime import Runtime
from perdure.server.storage.interface import StorageError
from perdure.server.storage.pg_leases import LeaseRow, NodeRow
from perdure.server.storage.postgres import PostgresStorage

log = logging.getLogger("perdure.cluster")

MOVE_WINDOW_S = 5.0  # at most partitions/8 leases handed to other nodes per window
# A placement step also runs this long after the soonest expiry of another node's lease (as read
# on the database clock), not only every renewal interval: a dead node's partitions are taken
# as soon as its leases run out, not up to one interval later. A live owner renews long before.
EXPIRY_SLACK_S = 0.05
STEP_MIN_S = 0.1  # the shortest pause between two placement steps


class ClusterNode:
    def __init__(
        self,
        storage: PostgresStorage,
        runtime: Runtime,
        *,
        renew_s: float,
        refresh: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._storage = storage
        self.storage = storage
        self.runtime = runtime
        self.refresh = refresh  # reload what other nodes registered (deployments, services)
        self._runtime = runtime
        self._renew_s = renew_s
        self.name = storage.node_name
        self.nodes: dict[str, NodeRow] = {}
        self.leases: list[LeaseRow] = []
        self._moves: deque[float] = deque()
        self._moves_max = max(1, storage.partitions // 8)
        self._lost = asyncio.Event()
        self._joined_at = 0.0
        self.mailbox = MailboxTask(storage, runtime)
        self._next_expiry = float("inf")  # monotonic: the soonest expiry of another node's lease

    def owned(self) -> set[int]:
        return set(self._storage.owned_partitions())

    def owner_address(self, partition: int) -> str | None:
        """The admin address of the live owner of `partition`, as last read (None: unknown)."""
        if partition >= len(self.leases):
            return None
        lease = self.leases[partition]
        if not lease.live or lease.owner is None:
            return None
        node = self.nodes.get(lease.owner)
        return None if node is None else node.address

    def any_owner_address(self) -> str | None:
        """Some other live node that owns partitions (for work that may go to any partition)."""
        owners = {lease.owner for lease in self.leases if lease.live and lease.owner != self.name}
        for name in sorted(o for o in owners if o is not None):
            node = self.nodes.get(name)
            if node is not None and node.address:
                return node.address
        return None

    async def run(self) -> None:
        """Renewal on its own cadence (a slow placement step, waiting for the processor to adopt
        or drop partitions, must never delay it past the lease lifetime), placement beside it."""
        self._lost = asyncio.Event()
        self._joined_at = time.monotonic()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._keep_renewing())
            tg.create_task(self._keep_placing())
            tg.create_task(self.mailbox.run())

    async def _keep_renewing(self) -> None:
        while True:
            try:
                lost = await self._storage.renew_leases()
            except StorageError:
                log.exception("lease renewal failed; retrying (the local deadline stops commits meanwhile)")
            else:
                if lost:
                    log.warning("node %s lost partitions %s to another node", self.name, lost)
                    self._lost.set()
            await asyncio.sleep(self._renew_s)

    async def _keep_placing(self) -> None:
        while True:
            try:
                await self.step()
            except StorageError:
                log.exception("cluster placement step failed; retrying")
            pause = min(self._renew_s, max(STEP_MIN_S, self._next_expiry - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), pause)

    async def step(self) -> None:
        """One move towards the placement: forget lost partitions, release (drained) and acquire."""
        storage = self._storage
        if self._lost.is_set():
            self._lost.clear()
            await self._runtime.sync_partitions()
        nodes = await storage.live_nodes()
        if self.name not in {n.name for n in nodes}:
            return  # not registered yet (the first renewal heartbeats)
        if time.monotonic() - self._joined_at < self._renew_s:
            return  # a join grace: nodes started together see each other before taking leases
        self.nodes = {n.name: n for n in nodes}
        self.leases = await self._read_leases()
        held = set(storage.owned_partitions())
        step = plan(
            self.name,
            list(self.nodes),
            [Lease(row.owner, row.live) for row in self.leases],
            held,
            self._move_budget(),
        )
        if step.release:
            dropped = storage.relinquish(step.release)  # no batch writes them from here on
            await self._runtime.sync_partitions()  # drained: state forgotten, attempts aborted
            await storage.release(dropped)
            self._moves.extend([time.monotonic()] * len(dropped))
            log.info("node %s handed partitions %s to other nodes", self.name, step.release)
        if self.refresh is not None:
            await self.refresh()
        if step.acquire:
            taken = await storage.acquire(step.acquire)
            if taken:
                log.info("node %s took partitions %s", self.name, taken)
                await self._runtime.sync_partitions()  # adopted: their waiting mail applied
                self.mailbox.wake()
                self.leases = await self._read_leases()

    async def _read_leases(self) -> list[LeaseRow]:
        """The leases, and when the soonest live lease of another node runs out (local clock)."""
        leases = await self._storage.leases()
        read_at = time.monotonic()  # after the database's now(): the wake-up is never early
        others = [
            row.expires_in_s
            for row in leases
            if row.live and row.owner != self.name and row.expires_in_s is not None
        ]
        self._next_expiry = read_at + min(others) + EXPIRY_SLACK_S if others else float("inf")
        return leases

    def _move_budget(self) -> int:
        now = time.monotonic()
        while self._moves and self._moves[0] < now - MOVE_WINDOW_S:
            self._moves.popleft()
        return self._moves_max - len(self._moves)

    async def leave(self) -> None:
        """Graceful stop: drop every partition, hand the leases back, leave the node table."""
        dropped = self._storage.relinquish(self._storage.owned_partitions())
        await self._runtime.sync_partitions()
        await self._storage.release(dropped)
        await self._storage.leave()
