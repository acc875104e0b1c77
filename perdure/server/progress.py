"""Recovery progress in the log: after a start, every `interval_s` while work recovered from the
store is still draining, one line of what waits where (the runtime's lanes, the invoker's slots,
the due timers) and what the group commits cost, so a slow restart shows where its time goes."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Protocol

log = logging.getLogger("perdure.recovery")

PROGRESS_INTERVAL_S = 1.0
PROGRESS_WINDOW_S = 300.0  # stop logging after this long even if work keeps waiting


class Loop(Protocol):
    batches: int
    commands: int
    commit_s: float
    timer_late_max_ms: int

    def backlog(self) -> tuple[int, int, int]: ...


class Slots(Protocol):
    @property
    def active(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def parked(self) -> int: ...

    def take_wait_max(self) -> tuple[float, float]: ...


def process_age_s() -> float | None:
    """Seconds since this process started (Linux), None where unknown."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def log_recovery(
    loop: Loop, slots: Slots, *, interval_s: float = PROGRESS_INTERVAL_S, window_s: float = PROGRESS_WINDOW_S
) -> None:
    """Log progress until nothing recovered waits any more (two quiet samples) or `window_s`."""
    t0 = time.monotonic()
    quiet = 0
    batches, commands, commit_s = loop.batches, loop.commands, loop.commit_s
    while quiet < 2 and time.monotonic() - t0 < window_s:
        await asyncio.sleep(interval_s)
        calls, queue, fired = loop.backlog()
        fresh_wait, again_wait = slots.take_wait_max()
        late_ms, loop.timer_late_max_ms = loop.timer_late_max_ms, 0
        busy = calls or queue or fired or slots.waiting or loop.batches != batches
        quiet = 0 if busy else quiet + 1
        log.info(
            "t=%.1fs lanes %d/%d/%d (requests/messages/timers), %d batches %d commands %.2fs committing,"
            " slots %d active %d waiting %d parked, slot wait max %.2fs new %.2fs other,"
            " timers applied up to %d ms late",
            time.monotonic() - t0,
            calls,
            queue,
            fired,
            loop.batches - batches,
            loop.commands - commands,
            loop.commit_s - commit_s,
            slots.active,
            slots.waiting,
            slots.parked,
            fresh_wait,
            again_wait,
            late_ms,
        )
        batches, commands, commit_s = loop.batches, loop.commands, loop.commit_s
