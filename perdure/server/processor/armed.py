"""The durable timers an invocation has armed: a pending retry, a delayed start, and every sleep
of its journal not completed yet (what must be deleted when it completes early)."""

from __future__ import annotations

from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.server.processor.commands import TIMER_DELAYED_INVOKE, TIMER_RETRY, TIMER_SLEEP, Timer
from perdure.server.processor.model import SCHEDULED, TIME_MS_MAX, Invocation


def armed_timers(inv: Invocation) -> list[Timer]:
    raw = inv.id.raw
    timers: list[Timer] = []
    if inv.next_retry_at_ms is not None:
        timers.append(Timer(inv.next_retry_at_ms, raw, TIMER_RETRY, inv.retry_count))
    if inv.status == SCHEDULED and inv.execution_time_ms is not None:
        timers.append(Timer(inv.execution_time_ms, raw, TIMER_DELAYED_INVOKE))
    for e in inv.journal:
        if e.type == T.SLEEP:
            sleep = decode(e.type, e.body)
            if sleep.result_completion_id not in inv.completed_ids:
                wake = min(sleep.wake_up_time, TIME_MS_MAX)
                timers.append(Timer(wake, raw, TIMER_SLEEP, sleep.result_completion_id))
    return timers
