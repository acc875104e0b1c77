"""Waiting on several durable futures at once: gather, wait_completed,
as_completed, select. The waiting itself is deterministic: it only looks at
which journal entries are complete."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from perdure.sdk.errors import TerminalError
from perdure.sdk.futures import DurableFuture
from perdure.sdk.session import Session


def _session_of(futures: tuple[DurableFuture[Any], ...]) -> Session:
    sessions = {id(f._session): f._session for f in futures if isinstance(f, DurableFuture)}
    if len(futures) != sum(isinstance(f, DurableFuture) for f in futures):
        raise TerminalError("All futures must be created by the SDK context.")
    if len(sessions) != 1:
        raise TerminalError("All futures must be created by the same SDK context.")
    return next(iter(sessions.values()))


async def gather(*futures: DurableFuture[Any]) -> list[DurableFuture[Any]]:
    """Wait until every future completed; returns them (await each for its value)."""
    if not futures:
        return []
    session = _session_of(futures)
    pending = [f.handle for f in futures if not f.is_completed()]
    if pending:
        await session.wait(pending, wait_all=True)
    return list(futures)


async def wait_completed(
    *futures: DurableFuture[Any],
) -> tuple[list[DurableFuture[Any]], list[DurableFuture[Any]]]:
    """Wait until at least one future completed; returns (completed, not completed)."""
    if not futures:
        return [], []
    session = _session_of(futures)
    if not any(f.is_completed() for f in futures):
        await session.wait([f.handle for f in futures], wait_all=False)
    done = [f for f in futures if f.is_completed()]
    return done, [f for f in futures if not f.is_completed()]


async def as_completed(*futures: DurableFuture[Any]) -> AsyncIterator[DurableFuture[Any]]:
    """Yield the futures as they complete."""
    remaining = list(futures)
    while remaining:
        done, remaining = await wait_completed(*remaining)
        for f in done:
            yield f


async def select(**futures: DurableFuture[Any]) -> list[Any]:
    """Wait for the first future to complete; returns `[its name, its value]`."""
    if not futures:
        raise ValueError("At least one future must be passed.")
    done, _ = await wait_completed(*futures.values())
    first = done[0]
    name = next(k for k, f in futures.items() if f is first)
    return [name, await first]
