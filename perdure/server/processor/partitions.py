"""Which partitions this processor covers, on a cluster node: adopting the partitions whose leases
the node took (their live invocations, locks, inboxes and timers loaded as a restart would), dropping
those it hands over, and refusing requests that reached it after their partition moved."""

from __future__ import annotations

from perdure.server.processor.core import ProcessorCore
from perdure.server.processor.effects import AbortAttempt
from perdure.server.storage.interface import Recovery

PARTITION_MOVED = "this node does not own the partition (it moved to another node); try again"


class Partitions(ProcessorCore):
    def owned_partitions(self) -> set[int]:
        return set(self._loc.owned)

    def adopt_partitions(self, parts: set[int], recovery: Recovery, now_ms: int) -> None:
        """This node took the leases of `parts`: load their live invocations, locks, inboxes and
        timers from `recovery` (which holds those partitions only) and restart what was running.
        Call between batches (nothing taken but uncommitted)."""
        assert not parts & self._loc.owned, "adopting a partition already owned"
        self._loc.change(self._loc.owned | parts)
        self._load(recovery, now_ms)

    def drop_partitions(self, parts: set[int]) -> None:
        """Another node owns `parts` now (or soon): forget everything of them, abort their attempts
        and answer their waiting requests 503, so nothing of them is acted on or acknowledged
        here again. Call between batches (nothing taken but uncommitted)."""
        assert not self._dirty and not self._batch, "dropping partitions in the middle of a batch"
        loc = self._loc
        loc.change(loc.owned - parts)
        for raw, inv in list(self._resident.items()):
            if loc.of_id(raw) in parts:
                if inv.attempt_live:
                    self._effects.append(AbortAttempt(raw, inv.attempt))
                del self._resident[raw]
                self._on_complete.pop(raw, None)
        for raw in [r for r in self._waiters if loc.of_id(r) in parts]:
            for token in self._waiters.pop(raw):
                self._answer(token, 503, "the invocation's partition moved to another node; try again")
        self._evict = {r for r in self._evict if loc.of_id(r) not in parts}
        for k in [k for k in self._locks if loc.of_key(k[1]) in parts]:
            del self._locks[k]
        for k in [k for k in self._inbox if loc.of_key(k[1]) in parts]:
            del self._inbox[k]
        for k in [k for k in self._state if loc.of_key(k[1]) in parts]:
            del self._state[k]
        self._promises.drop(lambda key: loc.of_key(key) in parts)
        self._dedup.clear()  # a cache of the store; reloaded on a miss

    def _foreign(self, raw: bytes, token: int) -> bool:
        """A request for a partition another node owns (it moved after routing): 503, nothing done."""
        if self._loc.owns_id(raw):
            return False
        if token:
            self._answer(token, 503, PARTITION_MOVED)
        return True
