"""A call's wait for its reply while watching for the requester going away (`_unless_gone`):
the reply wins when it comes first; the requester going away first (before or after the
watcher starts) raises `Abandoned`; cancelling the waiting task stays a cancellation; a
watcher that never started is closed, not left un-awaited."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from perdure.server.processor.effects import Reply
from perdure.server.runtime import WATCH_AFTER_S, Abandoned, _unless_gone


def reply() -> Reply:
    return Reply(1, "ok", code=200)


async def test_the_reply_wins_and_the_unstarted_watcher_is_closed() -> None:
    loop = asyncio.get_running_loop()
    started: list[bool] = []

    async def until() -> None:
        started.append(True)
        await asyncio.Event().wait()

    fut: asyncio.Future[Reply] = loop.create_future()
    loop.call_soon(fut.set_result, reply())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would be an error
        got = await _unless_gone(fut, until())
        gc.collect()
    assert got.code == 200 and started == []


async def test_a_slow_reply_still_wins_over_a_requester_that_stays() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Reply] = loop.create_future()
    loop.call_later(WATCH_AFTER_S * 4, fut.set_result, reply())
    got = await _unless_gone(fut, asyncio.Event().wait())  # type: ignore[arg-type]
    assert got.code == 200


async def test_a_requester_gone_before_the_reply_abandons_the_wait() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Reply] = loop.create_future()

    async def gone_soon() -> None:
        await asyncio.sleep(WATCH_AFTER_S)

    with pytest.raises(Abandoned):
        await _unless_gone(fut, gone_soon())
    assert fut.cancelled()


async def test_a_requester_gone_at_once_abandons_when_the_watcher_starts() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Reply] = loop.create_future()

    async def gone_now() -> None:
        return None

    with pytest.raises(Abandoned):
        await _unless_gone(fut, gone_now())


async def test_cancelling_the_caller_is_a_cancellation_not_an_abandon() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Reply] = loop.create_future()
    task = asyncio.create_task(_unless_gone(fut, asyncio.Event().wait()))  # type: ignore[arg-type]
    await asyncio.sleep(WATCH_AFTER_S * 2)  # the watcher runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_cancelled_before_the_watch_starts_closes_the_watch_unstarted() -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[Reply] = loop.create_future()
    started = False

    async def until() -> None:
        nonlocal started
        started = True

    watch = until()
    task = asyncio.create_task(_unless_gone(fut, watch))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not started and watch.cr_frame is None  # closed, never run
    assert not fut.done()  # the reply may still come (and nobody waits for it)
