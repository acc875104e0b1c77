"""The timer service keeps a bounded window of stored timers in memory and
fires each due timer, never early, reloading from the store as it drains."""

from __future__ import annotations

import asyncio

from perdure.server.processor.commands import TIMER_SLEEP, Command, Timer, TimerFired
from perdure.server.timers import TimerService


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000

    def __call__(self) -> int:
        return self.now_ms


async def test_many_stored_timers_fire_in_order_with_a_bounded_heap() -> None:
    stored = sorted(Timer(2_000 + i, i.to_bytes(24, "big"), TIMER_SLEEP, 1) for i in range(1_000))
    clock = Clock()
    fired: list[Timer] = []
    peak = 0

    def load(limit: int) -> list[Timer]:
        return stored[:limit]

    def submit(cmd: Command) -> None:
        assert isinstance(cmd, TimerFired)
        assert cmd.timer.wake_at_ms <= clock.now_ms, "fired early"
        fired.append(cmd.timer)
        stored.remove(cmd.timer)  # the processor deletes it

    svc = TimerService(submit, clock, load, resident_max=50)
    svc.reload()
    task = asyncio.create_task(svc.run())
    try:
        for step in range(2_000, 3_100, 10):
            clock.now_ms = step
            svc.arm(Timer(step + 5_000, b"x" * 24, TIMER_SLEEP, step))  # far future: stays stored
            stored.append(Timer(step + 5_000, b"x" * 24, TIMER_SLEEP, step))
            stored.sort()
            await asyncio.sleep(0.002)  # the service waits (due - now) of real time at most
            peak = max(peak, len(svc))
        clock.now_ms = 3_100
        async with asyncio.timeout(10):
            while sum(1 for t in fired if t.invocation != b"x" * 24) < 1_000:
                await asyncio.sleep(0.01)
                peak = max(peak, len(svc))
    finally:
        task.cancel()
    first = [t for t in fired if t.invocation != b"x" * 24]
    assert len(first) == 1_000 and len(set(first)) == 1_000
    assert first == sorted(first)
    assert peak <= 50
