"""The processor loop: drain the command queues, apply every command, commit the
batch (group commit: one transaction, one fsync), then release the effects.

Three lanes feed a batch, so new requests never wait behind a backlog of recovered work:
requests awaiting a reply (ingress, admin) go first, then what attempts and consumers sent,
then at most `TIMER_FIRES_PER_BATCH` due timers (after a restart thousands are due at once:
they drain over a few group commits instead of filling one huge batch ahead of everything).
Each lane keeps a share of every batch, so no lane's flood stops another.

Nothing leaves the server before the batch that caused it is durable: replies
to callers, notifications to services, new attempts, armed timers."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from perdure.server.invoker.invoker import Invoker
from perdure.server.processor.commands import Command, Terminate, TimerFired
from perdure.server.processor.effects import (
    AbortAttempt,
    ArmTimer,
    Completed,
    Effect,
    Reply,
    SendToAttempt,
    StartAttempt,
)
from perdure.server.processor.model import Invocation
from perdure.server.processor.processor import Processor
from perdure.server.storage.interface import Reclaimable, Recovery, Storage, StorageError
from perdure.server.telemetry.hub import Telemetry
from perdure.server.timers import TimerService

log = logging.getLogger("perdure.runtime")

BATCH_COMMANDS_MAX = 4096
CALLS_PER_BATCH = BATCH_COMMANDS_MAX // 2
TIMER_FIRES_PER_BATCH = 512
RECOVERY_BACKOFF_S_MAX = 5.0
WATCH_AFTER_S = 0.05  # a call's reply not here yet: watch for its requester going away
RETENTION_SWEEP_INTERVAL_S = 30.0
RETENTION_SWEEP_BATCH_MAX = 1000
RETENTION_SWEEP_ROUNDS_MAX = 10_000  # batches per sweep (a bound, not a goal)
RECLAIM_PAGES_PER_STEP = 2048  # 8 MiB of 4 KiB pages per writer-thread step


class Abandoned(Exception):
    """The requester disconnected before the reply; the command itself stands."""


class Unavailable(Exception):
    """The store cannot take writes right now; new work is refused (503)."""


class Partitions(Protocol):
    """A cluster node's store: which partitions it holds leases for, and their recovery."""

    def owned_partitions(self) -> list[int]: ...
    def recovery_for(self, partitions: set[int]) -> Recovery: ...
    async def revalidate(self) -> list[int]: ...  # renew now; drop what is lost; returns it


class Router(Protocol):
    """Sends a command whose partition another node owns to that node (the cluster's forwarding),
    or into the partition's inbox when no live owner is known; None: apply it here."""

    async def route(self, cmd: Command, until: Coroutine[Any, Any, None] | None) -> Reply | None: ...


def wall_clock_ms() -> int:
    return int(time.time() * 1000)


class Runtime:
    def __init__(
        self,
        storage: Storage,
        make_processor: Callable[[], Processor],
        invoker: Invoker,
        *,
        clock_ms: Callable[[], int] = wall_clock_ms,
        telemetry: Telemetry | None = None,
    ) -> None:
        self._storage = storage
        self._make_processor = make_processor
        self._processor = make_processor()
        self._invoker = invoker
        self._clock_ms = clock_ms
        self._calls: deque[Command] = deque()  # requests awaiting a reply: first in each batch
        self._queue: deque[Command] = deque()  # attempts' messages, consumers, sweeps
        self._fired: deque[Command] = deque()  # due timers: a bounded share of each batch
        self._wakeup = asyncio.Event()
        self._tokens = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Reply]] = {}
        self.timers = TimerService(self.submit_fired, clock_ms, storage.load_timers)
        self.healthy = True
        self.batches = 0
        self.commands = 0
        self.commit_s = 0.0
        self.timer_late_max_ms = 0  # the latest a timer was applied after its due time (progress log)
        self._flushing = False
        self._telemetry = telemetry
        self.partitions: Partitions | None = None  # a cluster node: its leases change while it runs
        self.router: Router | None = None
        self._ownership: asyncio.Future[None] | None = None  # a change waiting to be applied

    def resident(self) -> dict[bytes, Invocation]:
        """The current processor's resident invocations (for introspection)."""
        return self._processor.resident()

    def limit_usage(self) -> list[dict[str, Any]]:
        """The current processor's rule counts and buckets (for /metrics; on the event loop)."""
        return self._processor.limit_usage(self._clock_ms())

    def submit(self, cmd: Command) -> None:
        self._queue.append(cmd)
        self._wakeup.set()

    def submit_fired(self, cmd: Command) -> None:
        """A due timer's firing (the timer service): drained at a bounded rate per batch."""
        self._fired.append(cmd)
        self._wakeup.set()

    def backlog(self) -> tuple[int, int, int]:
        """Commands waiting: requests, attempts' and others' messages, timer firings."""
        return len(self._calls), len(self._queue), len(self._fired)

    def request(self) -> tuple[int, asyncio.Future[Reply]]:
        """A reply token and the future its Reply resolves."""
        token = next(self._tokens)
        fut: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._replies[token] = fut
        return token, fut

    def forget(self, token: int) -> None:
        """The requester went away (client disconnected)."""
        self._replies.pop(token, None)

    async def call(
        self, make: Callable[[int], Command], *, until: Coroutine[Any, Any, None] | None = None
    ) -> Reply:
        """Submit a command and wait for its reply. With `until` (the requester
        going away), stop waiting when it completes first: raises `Abandoned`. On a cluster node
        a command for a partition another node owns goes to that node."""
        if self.router is not None:
            reply = await self.router.route(make(0), until)
            if reply is not None:
                return reply
        return await self.call_here(make, until=until)

    async def call_here(
        self, make: Callable[[int], Command], *, until: Coroutine[Any, Any, None] | None = None
    ) -> Reply:
        """`call` without forwarding (a command forwarded by another node: it stops here)."""
        if not self.healthy:
            if until is not None:
                until.close()
            raise Unavailable("the store cannot write; try again later")
        token, fut = self.request()
        self._calls.append(make(token))
        self._wakeup.set()
        try:
            if until is None:
                return await fut
            return await _unless_gone(fut, until)
        finally:
            self._replies.pop(token, None)

    async def sweep_retention(
        self,
        interval_s: float = RETENTION_SWEEP_INTERVAL_S,
        batch_max: int = RETENTION_SWEEP_BATCH_MAX,
        reclaim_pages_max: int = RECLAIM_PAGES_PER_STEP,
    ) -> None:
        """Every `interval_s`, purge what retention let go of, then give the space back."""
        while True:
            await asyncio.sleep(interval_s)
            await self.sweep_once(batch_max, reclaim_pages_max)

    async def sweep_once(self, batch_max: int, reclaim_pages_max: int) -> int:
        """Purge completed invocations (or just their journals) whose retention ran out, in
        batches of `batch_max`: each batch is one group commit, waited for before the next, so
        cleanup never floods the queue ahead of live work (the processor checks each again, so a
        sweep racing a new submission does no harm). Then free pages (from this sweep or from
        ordinary churn) go back to the file system in steps of `reclaim_pages_max`. Returns how
        many records were looked at."""
        total = 0
        for _ in range(RETENTION_SWEEP_ROUNDS_MAX):
            if not self.healthy:
                break
            expired = self._storage.expired(self._clock_ms(), batch_max)
            if not expired:
                break
            for raw in expired[:-1]:
                self.submit(Terminate(raw, "expire", 0))
            token, done = self.request()  # waited for, but behind live work (not a request)
            self.submit(Terminate(expired[-1], "expire", token))
            try:
                await done
            except Unavailable:
                break
            finally:
                self._replies.pop(token, None)
            total += len(expired)
            if len(expired) < batch_max:
                break
        if isinstance(self._storage, Reclaimable):  # a no-op when no page is free
            while self.healthy and await self._storage.reclaim(reclaim_pages_max) >= reclaim_pages_max:
                await asyncio.sleep(0)  # let commits through between steps
        return total

    async def recover(self) -> bool:
        """Rebuild the processor from the store. Runs in a worker thread (nothing
        else touches the processor until the loop starts), so the HTTP servers
        answer meanwhile; requests queue until the loop runs. True when recovered
        work waits: attempts restarted or timers due."""
        t0 = time.perf_counter()
        self.timers.reload()
        t1 = time.perf_counter()
        await asyncio.to_thread(self._processor.recover, self._storage, self._clock_ms())
        t2 = time.perf_counter()
        started = await self._flush()
        due = self.timers.due_count(self._clock_ms())
        log.info(
            "recovered: %d attempts restarted, %d timers resident (%d due); timers %.0f ms,"
            " invocations %.0f ms, first commit %.0f ms",
            started,
            len(self.timers),
            due,
            (t1 - t0) * 1000,
            (t2 - t1) * 1000,
            (time.perf_counter() - t2) * 1000,
        )
        return started > 0 or due > 0

    async def run(self) -> None:
        """The loop. A failed commit leaves memory ahead of the store: the
        processor is dropped and rebuilt from storage (as after a crash), new
        work is refused meanwhile, and nothing of the failed batch was
        acknowledged."""
        backoff_s = 0.05
        while True:
            try:
                if not self.healthy:
                    await self._restart_processor()
                    backoff_s = 0.05
                await self._loop()
            except StorageError:
                log.exception("commit failed; rebuilding the processor from storage")
                self._fail_pending()
                await asyncio.sleep(backoff_s)
                backoff_s = min(RECOVERY_BACKOFF_S_MAX, backoff_s * 2)
            except Exception:
                # A bug while applying a command: memory may be half-changed, so do
                # what a crash would do (nothing of the batch was acknowledged).
                log.exception("processor failed; rebuilding it from storage")
                self._fail_pending()
                await asyncio.sleep(backoff_s)
                backoff_s = min(RECOVERY_BACKOFF_S_MAX, backoff_s * 2)

    async def sync_partitions(self) -> None:
        """Make the processor cover exactly the partitions the store holds leases for now; returns
        once done (between two batches: dropped partitions are forgotten and their attempts
        aborted, adopted ones loaded from the store and their invocations restarted)."""
        if self.partitions is None:
            return
        if self._ownership is None:
            self._ownership = asyncio.get_running_loop().create_future()
            self._wakeup.set()
        await asyncio.shield(self._ownership)

    async def _apply_ownership(self) -> None:
        fut, self._ownership = self._ownership, None
        assert fut is not None and self.partitions is not None
        try:
            want = set(self.partitions.owned_partitions())
            have = self._processor.owned_partitions()
            if have - want:
                self._processor.drop_partitions(have - want)
                log.info("dropped partitions %s", sorted(have - want))
            if want - have:
                add = want - have
                recovery = self.partitions.recovery_for(add)
                await asyncio.to_thread(self._processor.adopt_partitions, add, recovery, self._clock_ms())
                self.timers.reload()
                log.info("adopted partitions %s", sorted(add))
            await self._flush()
        finally:
            if not fut.done():
                fut.set_result(None)

    async def _loop(self) -> None:
        calls, queue, fired = self._calls, self._queue, self._fired
        while True:
            if self._ownership is not None:
                await self._apply_ownership()
            if not (calls or queue or fired):
                self._wakeup.clear()
                if self._ownership is not None:
                    continue
                await self._wakeup.wait()
                continue
            now = self._clock_ms()
            n = 0
            apply = self._processor.apply
            # Each lane has a share no other lane's backlog can take (requests first).
            while calls and n < CALLS_PER_BATCH:
                apply(calls.popleft(), now)
                n += 1
            while queue and n < BATCH_COMMANDS_MAX:
                apply(queue.popleft(), now)
                n += 1
            while calls and n < BATCH_COMMANDS_MAX:
                apply(calls.popleft(), now)
                n += 1
            stop = n + TIMER_FIRES_PER_BATCH
            while fired and n < stop:
                cmd = fired.popleft()
                if isinstance(cmd, TimerFired):
                    self.timer_late_max_ms = max(self.timer_late_max_ms, now - cmd.timer.wake_at_ms)
                apply(cmd, now)
                n += 1
            self.commands += n
            await self._flush(n)

    def _fail_pending(self) -> None:
        self.healthy = False
        self._invoker.abort_all()
        self._calls.clear()
        self._queue.clear()
        self._fired.clear()
        for fut in self._replies.values():
            if not fut.done():
                fut.set_exception(Unavailable("the store failed to commit; the request was not accepted"))
        self._replies.clear()

    async def _restart_processor(self) -> None:
        if self.partitions is not None:
            # A failed commit may mean a lost lease (fenced): confirm the leases first, so the new
            # processor covers only partitions still held and restarts no attempt of another's.
            lost = await self.partitions.revalidate()
            if lost:
                log.warning("partitions %s are no longer this node's", lost)
        self._processor = self._make_processor()
        self.timers.reload(refire=True)
        self._processor.recover(self._storage, self._clock_ms())
        await self._flush()
        self.healthy = True
        log.info("processor rebuilt from storage; accepting work again")

    def idle(self) -> bool:
        """Nothing queued and no batch being committed (the test harness waits for this)."""
        return not (self._calls or self._queue or self._fired) and not self._flushing

    async def _flush(self, commands: int = 0) -> int:
        """Commit what the processor took, then release its effects; returns how many attempts
        it started."""
        batch, effects = self._processor.take()
        self._flushing = True
        try:
            if batch:
                t0 = time.perf_counter()
                await self._storage.commit_batch(batch)
                self.batches += 1
                took_s = time.perf_counter() - t0
                self.commit_s += took_s
                if self._telemetry is not None:
                    self._telemetry.committed(commands, took_s)
        finally:
            self._flushing = False
        self._processor.committed()
        return self._release(effects)

    def _release(self, effects: list[Effect]) -> int:
        inv = self._invoker
        started = 0
        for e in effects:
            if isinstance(e, SendToAttempt):
                inv.send(e)
            elif isinstance(e, Reply):
                fut = self._replies.pop(e.token, None)
                if fut is not None and not fut.done():
                    fut.set_result(e)
            elif isinstance(e, StartAttempt):
                inv.start(e)
                started += 1
            elif isinstance(e, ArmTimer):
                self.timers.arm(e.timer)
            elif isinstance(e, AbortAttempt):
                inv.abort(e)
            elif isinstance(e, Completed) and self._telemetry is not None:
                self._telemetry.completed(e)
        return started


async def _unless_gone(fut: asyncio.Future[Reply], until: Coroutine[Any, Any, None]) -> Reply:
    """`fut`'s reply, unless `until` (the requester going away) completes first: `Abandoned`.
    Most replies come within a few commits, so the wait starts with a timer and no task (no task
    group either): only a reply not here after `WATCH_AFTER_S` starts the task running `until`."""
    if not fut.done():
        loop = asyncio.get_running_loop()
        early: asyncio.Future[None] = loop.create_future()

        def wake(_: object = None) -> None:
            if not early.done():
                early.set_result(None)

        timer = loop.call_later(WATCH_AFTER_S, wake)
        fut.add_done_callback(wake)
        try:
            await early
        except BaseException:
            until.close()  # this task is cancelled before the watch began
            raise
        finally:
            timer.cancel()
            fut.remove_done_callback(wake)
    if fut.done():
        until.close()
        return fut.result()
    return await _watching(fut, until)


async def _watching(fut: asyncio.Future[Reply], until: Coroutine[Any, Any, None]) -> Reply:
    """The reply is late: wait for it with a task running `until` beside."""
    async with asyncio.TaskGroup() as tg:
        watcher = tg.create_task(until)

        def gone(_: asyncio.Task[None]) -> None:
            if not fut.done():
                fut.cancel()

        watcher.add_done_callback(gone)
        try:
            await fut
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise  # this task is cancelled
        finally:
            watcher.cancel()
    if fut.cancelled():  # by `gone`: raised here, as a TaskGroup would wrap it in a group
        raise Abandoned("the requester went away")
    return fut.result()
