"""The thread a store's writes run on, in order, one at a time.

`loop.run_in_executor` on a one-worker ThreadPoolExecutor did the same at a higher price per call:
a concurrent Future (a Condition and its locks), a work item, the executor's thread accounting
and an asyncio Future chained to the concurrent one. Here a call is one tuple on a SimpleQueue and
one `call_soon_threadsafe` back. As with the executor, a caller cancelled while its call runs
leaves the call running to its end (a write cannot be taken back half-way); its result is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_Job = tuple[Callable[..., Any], tuple[Any, ...], asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


def _settle(fut: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if fut.cancelled():
        return
    if ok:
        fut.set_result(value)
    else:
        fut.set_exception(value)


class WriterThread:
    """Runs functions on one thread of its own, in the order they were handed in."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._started = False
        self._stopped = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the thread; its result or its exception here."""
        if self._stopped:
            raise RuntimeError("the writer thread is stopped")
        if not self._started:
            self._started = True
            self._thread.start()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((fn, args, loop, fut))
        return await fut

    def shutdown(self) -> None:
        """Finish the calls handed in, then end the thread (waits for it)."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self._jobs.put(None)
            self._thread.join()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, loop, fut = job
            try:
                value, ok = fn(*args), True
            except BaseException as exc:  # handed to the caller, as the executor did
                value, ok = exc, False
            # RuntimeError: the loop closed while the call ran, so nobody waits for it.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, fut, ok, value)
