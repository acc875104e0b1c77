"""Durable promises of workflows: a cache over the promise table. A promise is
completed once; until then it holds the callers waiting for it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from perdure.server.processor.model import CallerRef, Outcome
from perdure.server.storage.interface import Reader


@dataclass(slots=True)
class Promise:
    outcome: Outcome | None = None
    waiters: list[CallerRef] = field(default_factory=list)


class PromiseCache:
    """Write-through cache: every change is also put in the current batch by
    the processor (via `record`), so the cache is never behind the store."""

    def __init__(self, reader: Reader) -> None:
        self._reader = reader
        self._cache: dict[tuple[str, str, str], Promise] = {}

    def get(self, service: str, key: str, name: str) -> Promise:
        k = (service, key, name)
        p = self._cache.get(k)
        if p is None:
            raw = self._reader.get_promise(service, key, name)
            p = decode_promise(raw) if raw is not None else Promise()
            self._cache[k] = p
        return p

    def trim(self, entries_max: int) -> None:
        """Drop the oldest half when over `entries_max` (call only when the store is current)."""
        if len(self._cache) > entries_max:
            for k in list(self._cache)[: len(self._cache) // 2]:
                del self._cache[k]

    def forget(self, service: str, key: str) -> None:
        for k in [k for k in self._cache if k[0] == service and k[1] == key]:
            del self._cache[k]

    def drop(self, key_matches: Callable[[str], bool]) -> None:
        """Forget the promises of the keys `key_matches` (their partition moved to another node)."""
        for k in [k for k in self._cache if key_matches(k[1])]:
            del self._cache[k]

    def record(self, service: str, key: str, name: str) -> tuple[str, str, str, bytes]:
        return (service, key, name, encode_promise(self._cache[(service, key, name)]))


def encode_promise(p: Promise) -> bytes:
    d: dict[str, Any] = {
        "o": p.outcome.to_json() if p.outcome else None,
        "w": [[w.invocation_id, w.completion_id, w.notification_type] for w in p.waiters],
    }
    return orjson.dumps(d)


def decode_promise(raw: bytes) -> Promise:
    d = orjson.loads(raw)
    return Promise(Outcome.from_json(d["o"]) if d["o"] else None, [CallerRef(*w) for w in d["w"]])
