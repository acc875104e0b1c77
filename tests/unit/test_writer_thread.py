"""The store's writer thread: calls run in order on one thread, results and errors come back to
the caller, a cancelled caller does not stop its call, shutdown finishes what was handed in."""

from __future__ import annotations

import asyncio
import threading

import pytest

from perdure.server.storage.writer_thread import WriterThread


async def test_calls_run_in_order_on_one_thread_of_their_own() -> None:
    writer = WriterThread("test-writer")
    seen: list[tuple[int, str]] = []

    def record(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * 2

    try:
        results = await asyncio.gather(*(writer.run(record, i) for i in range(200)))
    finally:
        writer.shutdown()
    assert results == [i * 2 for i in range(200)]
    assert [i for i, _ in seen] == list(range(200))
    assert {name for _, name in seen} == {"test-writer"}


async def test_an_error_reaches_its_caller_and_the_thread_goes_on() -> None:
    writer = WriterThread("test-writer")

    def fail() -> None:
        raise ValueError("no such table")

    try:
        with pytest.raises(ValueError, match="no such table"):
            await writer.run(fail)
        assert await writer.run(lambda: "still here") == "still here"
    finally:
        writer.shutdown()


async def test_a_cancelled_caller_leaves_its_call_running_to_the_end() -> None:
    writer = WriterThread("test-writer")
    started, release = threading.Event(), threading.Event()
    done: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(10)
        done.append(True)

    try:
        task = asyncio.create_task(writer.run(slow))
        await asyncio.to_thread(started.wait, 10)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert await writer.run(lambda: len(done)) == 1  # the next call runs after it
    finally:
        writer.shutdown()


async def test_shutdown_finishes_the_calls_handed_in_then_refuses() -> None:
    writer = WriterThread("test-writer")
    gate = threading.Event()
    ran: list[int] = []
    first = asyncio.create_task(writer.run(gate.wait, 10))
    queued = [asyncio.create_task(writer.run(ran.append, i)) for i in range(5)]
    await asyncio.sleep(0)  # every call handed in
    gate.set()
    await asyncio.to_thread(writer.shutdown)
    assert ran == list(range(5))
    await asyncio.gather(first, *queued)
    with pytest.raises(RuntimeError, match="stopped"):
        await writer.run(ran.append, 9)
