"""Timer service: a heap of armed timers and one task that fires them when due
(never early) by submitting `TimerFired` to the processor. Timers are durable
rows; this is only the in-memory wake-up schedule."""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable

from perdure.server.processor.commands import Command, Timer, TimerFired


class TimerService:
    def __init__(self, submit: Callable[[Command], None], clock_ms: Callable[[], int]) -> None:
        self._submit = submit
        self._clock_ms = clock_ms
        self._heap: list[Timer] = []
        self._armed: set[Timer] = set()
        self._changed = asyncio.Event()

    def arm(self, timer: Timer) -> None:
        if timer in self._armed:
            return
        self._armed.add(timer)
        heapq.heappush(self._heap, timer)
        if self._heap[0] is timer:
            self._changed.set()

    def __len__(self) -> int:
        return len(self._heap)

    async def run(self) -> None:
        heap = self._heap
        while True:
            self._changed.clear()
            if not heap:
                await self._changed.wait()
                continue
            now = self._clock_ms()
            due = heap[0].wake_at_ms
            if due > now:
                try:
                    async with asyncio.timeout((due - now) / 1000):
                        await self._changed.wait()
                except TimeoutError:
                    pass
                continue
            while heap and heap[0].wake_at_ms <= now:
                t = heapq.heappop(heap)
                self._armed.discard(t)
                self._submit(TimerFired(t))
