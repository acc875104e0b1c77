"""Admission of attempts: at most `capacity` run at once, and none waits behind
attempts that are only waiting themselves.

An attempt *holds a slot* from its start until it ends or is *parked*. An
attempt whose service is waiting on the server (no `ctx.run` in progress, no
message either way for `park_idle_s`) is *parkable*: when others wait for a
slot, the one idle the longest is parked (the invoker ends its request stream,
so the service suspends, as after Restate's inactivity timeout) and its slot
goes to a waiter at once. Parked attempts wind down on their own (Suspension,
or the abort timeout) and are bounded by `parked_max`.

Waiters are served from two queues in turn, first attempts of new invocations
and every other attempt (retries, resumptions, recovery after a restart), so
neither a backlog of resumptions nor a burst of new work starves the other.

Sans-IO: tokens are opaque hashable values, time comes from the caller.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)


@dataclass(slots=True)
class RoomMade(Generic[T]):
    """What `make_room` decided: attempts to park, attempts now admitted, and
    when to look again (seconds from now) if waiters remain."""

    park: list[T] = field(default_factory=list)
    admitted: list[T] = field(default_factory=list)
    next_check_s: float | None = None


class Admission(Generic[T]):
    def __init__(self, capacity: int, *, parked_max: int, park_idle_s: float) -> None:
        if capacity < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.capacity = capacity
        self.parked_max = parked_max
        self.park_idle_s = park_idle_s
        self._active: set[T] = set()
        self._idle: OrderedDict[T, float] = OrderedDict()  # parkable active tokens, oldest first
        self._parked: set[T] = set()
        self._fresh: deque[T] = deque()
        self._again: deque[T] = deque()
        self._queued: set[T] = set()
        self._fresh_turn = True
        self.parked_total = 0

    @property
    def active(self) -> int:
        return len(self._active)

    @property
    def parked(self) -> int:
        return len(self._parked)

    @property
    def waiting(self) -> int:
        return len(self._queued)

    def offer(self, token: T, *, fresh: bool, now: float) -> bool:
        """A new attempt. True: it holds a slot and may start now; False: queued."""
        assert token not in self._active and token not in self._queued, "token offered twice"
        if len(self._active) < self.capacity and not self._queued:
            self._take_slot(token, now)
            return True
        (self._fresh if fresh else self._again).append(token)
        self._queued.add(token)
        return False

    def activity(self, token: T, *, parkable: bool, now: float) -> None:
        """The attempt exchanged a message; `parkable` is False while a run is open."""
        if token not in self._active:
            return
        if parkable:
            self._idle[token] = now
            self._idle.move_to_end(token)
        else:
            self._idle.pop(token, None)

    def finish(self, token: T, now: float) -> list[T]:
        """The attempt ended (or was dropped while queued); returns the tokens
        admitted into the freed slot, if any."""
        if token in self._queued:
            self._queued.discard(token)
            for q in (self._fresh, self._again):
                try:
                    q.remove(token)
                    break
                except ValueError:
                    continue
            return []
        self._parked.discard(token)
        self._idle.pop(token, None)
        if token in self._active:
            self._active.discard(token)
        return self._fill(now)

    def make_room(self, now: float) -> RoomMade[T]:
        """While attempts wait and no slot is free, park the longest-idle
        parkable attempts whose idle time has reached `park_idle_s`."""
        out: RoomMade[T] = RoomMade()
        out.admitted.extend(self._fill(now))
        while self._queued and len(self._active) >= self.capacity:
            if len(self._parked) >= self.parked_max or not self._idle:
                break  # nothing can be parked now; a finishing attempt frees a slot
            token, since = next(iter(self._idle.items()))
            due = since + self.park_idle_s
            if due > now:
                out.next_check_s = due - now
                break
            del self._idle[token]
            self._active.discard(token)
            self._parked.add(token)
            self.parked_total += 1
            out.park.append(token)
            out.admitted.extend(self._fill(now))
        return out

    def _fill(self, now: float) -> list[T]:
        admitted: list[T] = []
        while self._queued and len(self._active) < self.capacity:
            token = self._next_waiter()
            self._take_slot(token, now)
            admitted.append(token)
        return admitted

    def _next_waiter(self) -> T:
        first, second = (self._fresh, self._again) if self._fresh_turn else (self._again, self._fresh)
        self._fresh_turn = not self._fresh_turn
        token = first.popleft() if first else second.popleft()
        self._queued.discard(token)
        return token

    def _take_slot(self, token: T, now: float) -> None:
        self._active.add(token)
        self._idle[token] = now  # a starting attempt has nothing open yet
