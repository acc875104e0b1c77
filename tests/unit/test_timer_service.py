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


async def test_timers_fired_but_not_yet_deleted_are_not_fired_again_and_do_not_starve_the_loop() -> None:
    """Regression: with more stored timers than the window, a reload used to re-fire the timers
    the processor had not deleted yet, in a loop that never yielded (10,000 sleeps froze the server)."""
    stored = [Timer(1_000, i.to_bytes(24, "big"), TIMER_SLEEP, 1) for i in range(200)]
    clock = Clock()
    submitted: list[Timer] = []
    other_task_runs = 0

    def submit(cmd: Command) -> None:
        assert isinstance(cmd, TimerFired)
        submitted.append(cmd.timer)

    svc = TimerService(submit, clock, lambda n: stored[:n], resident_max=50)
    svc.reload()

    async def other() -> None:
        nonlocal other_task_runs
        while True:
            other_task_runs += 1
            await asyncio.sleep(0.001)

    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(svc.run()), tg.create_task(other())]
        await asyncio.sleep(0.3)  # the "processor" deletes nothing meanwhile
        assert len(submitted) == len(set(submitted)) == 50, len(submitted)
        assert other_task_runs > 10
        del stored[:50]  # now the processor has handled those
        await asyncio.sleep(0.3)
        for t in tasks:
            t.cancel()
    assert len(submitted) == len(set(submitted)) == 100, len(submitted)
