"""Timer service: the in-memory wake-up schedule of durable timers.

Timers are rows of the store; this keeps only the earliest `resident_max` of
them in a heap (memory stays flat with 100,000 pending sleeps) and reloads
from the store when the heap runs low. One task fires due timers (never
early) by submitting `TimerFired`. A timer may be submitted twice (a reload
racing its deletion); the processor treats a second firing as a no-op."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable

from perdure.server.processor.commands import Command, Timer, TimerFired

RESIDENT_TIMERS_MAX = 10_000
RELOAD_RETRY_S = 0.05  # everything stored is already firing: let the processor delete them first


class TimerService:
    def __init__(
        self,
        submit: Callable[[Command], None],
        clock_ms: Callable[[], int],
        load: Callable[[int], list[Timer]],
        *,
        resident_max: int = RESIDENT_TIMERS_MAX,
    ) -> None:
        assert resident_max >= 2
        self._submit = submit
        self._clock_ms = clock_ms
        self._load = load
        self._resident_max = resident_max
        self._heap: list[Timer] = []
        self._armed: set[Timer] = set()
        # Every stored timer at or before the horizon is resident (or fired);
        # later ones wait in the store until a reload.
        self._horizon_ms: float = math.inf
        # Fired but maybe not yet deleted by the processor: a reload must not fire them again.
        self._fired: set[Timer] = set()
        self._changed = asyncio.Event()

    def reload(self, *, refire: bool = False) -> int:
        """(Re)load the earliest stored timers; returns how many were new. At start
        and after a processor rebuild (`refire`: queued firings were dropped)."""
        rows = self._load(self._resident_max)
        if refire:
            self._fired.clear()
        else:
            self._fired.intersection_update(rows)  # the rest were deleted: done
        before = len(self._heap)
        for t in rows:
            if t not in self._fired:
                self._push(t)
        self._horizon_ms = rows[-1].wake_at_ms if len(rows) >= self._resident_max else math.inf
        self._changed.set()
        return len(self._heap) - before

    def arm(self, timer: Timer) -> None:
        if timer.wake_at_ms > self._horizon_ms:
            return  # stored; a reload brings it in when its turn comes
        self._push(timer)
        if len(self._heap) > self._resident_max:
            self._shed()
        if self._heap[0] is timer:
            self._changed.set()

    def _push(self, timer: Timer) -> None:
        if timer in self._armed:
            return
        self._armed.add(timer)
        heapq.heappush(self._heap, timer)

    def _shed(self) -> None:
        """Drop the latest half back to the store so memory stays bounded."""
        keep = heapq.nsmallest(self._resident_max // 2, self._heap)
        self._heap = keep
        heapq.heapify(self._heap)
        self._armed = set(keep)
        self._horizon_ms = keep[-1].wake_at_ms if keep else math.inf

    def __len__(self) -> int:
        return len(self._heap)

    def clock_moved(self) -> None:
        """The clock jumped forward (the test harness): look again at what is due."""
        self._changed.set()

    def due_count(self, now_ms: int) -> int:
        """How many resident timers are due at `now_ms` (a log line's figure: O(n))."""
        return sum(1 for t in self._heap if t.wake_at_ms <= now_ms)

    def due(self, now_ms: int) -> bool:
        """Whether a resident timer is due at `now_ms` and not fired yet."""
        return bool(self._heap) and self._heap[0].wake_at_ms <= now_ms

    async def run(self) -> None:
        heap = self._heap
        while True:
            self._changed.clear()
            heap = self._heap
            if len(heap) < self._resident_max // 2 and self._horizon_ms != math.inf:
                if self.reload() == 0:
                    await asyncio.sleep(RELOAD_RETRY_S)
                continue
            if not heap:
                await self._changed.wait()
                continue
            now = self._clock_ms()
            due = heap[0].wake_at_ms
            if due > now:
                try:
                    async with asyncio.timeout(min((due - now) / 1000, 3600.0)):
                        await self._changed.wait()
                except TimeoutError:
                    pass
                continue
            while heap and heap[0].wake_at_ms <= now:
                t = heapq.heappop(heap)
                self._armed.discard(t)
                if self._horizon_ms != math.inf:  # only a reload could bring it back
                    self._fired.add(t)
                self._submit(TimerFired(t))
