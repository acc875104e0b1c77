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
Other attempts in flight, holding a slot or parked and still winding down, are
at most `others_max`: the rest of the slots stay free for first attempts, so a
new invocation starts at once however many resumptions wait (after a restart
with thousands due), and the service it runs on is not busy with more than
`others_max` replays when it arrives. A parked attempt counts until it ends
because the service still runs it: parking frees our slot, not the service's
work (when parking freed the share at once, a slow service had every resumed
attempt parked 250 ms after its start and thousands replaying at once). Past
the share, waiting other attempts park idle ones (as many as wait, and at most
a quarter of the share at once), whose share is theirs once they have wound down.
An other attempt inside a `ctx.run` is past its replay: while the run is open
it holds its slot but not its share, so resumed attempts busy in long runs do
not shut the resumptions behind them out (they are bounded by the slots only).

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
    def __init__(
        self, capacity: int, *, parked_max: int, park_idle_s: float, others_max: int | None = None
    ) -> None:
        if capacity < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self.capacity = capacity
        self.others_max = capacity if others_max is None else max(1, min(capacity, others_max))
        self.parked_max = parked_max
        self.park_idle_s = park_idle_s
        self._active: set[T] = set()
        self._others: set[T] = set()  # other attempts in flight: active or parked, until they end
        self._others_parked: set[T] = set()
        self._others_in_run: set[T] = set()  # active others with a run open: outside the share
        self._parked_others_max = max(1, self.others_max // 4)
        # Parkable active tokens, oldest first: first attempts, and the others.
        self._idle_first: OrderedDict[T, float] = OrderedDict()
        self._idle_others: OrderedDict[T, float] = OrderedDict()
        self._parked: set[T] = set()
        self._fresh: deque[T] = deque()
        self._again: deque[T] = deque()
        self._queued: dict[T, float] = {}  # waiting tokens: since when
        self._wait_max = [0.0, 0.0]  # longest slot wait of first attempts, of others (progress log)
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

    def take_wait_max(self) -> tuple[float, float]:
        """The longest slot waits (first attempts, others) since the last call; resets them."""
        fresh, again = self._wait_max
        self._wait_max = [0.0, 0.0]
        return fresh, again

    def offer(self, token: T, *, fresh: bool, now: float) -> bool:
        """A new attempt. True: it holds a slot and may start now; False: queued."""
        assert token not in self._active and token not in self._queued, "token offered twice"
        lane = self._fresh if fresh else self._again
        if not lane and self._room_for(fresh):
            self._take_slot(token, now, fresh)
            return True
        lane.append(token)
        self._queued[token] = now
        return False

    def activity(self, token: T, *, parkable: bool, now: float) -> bool:
        """The attempt exchanged a message; `parkable` is False while a run is open.
        True when that left room in the others' share (a run opened): waiters may fit."""
        if token not in self._active:
            return False
        other = token in self._others
        idle = self._idle_others if other else self._idle_first
        if parkable:
            idle[token] = now
            idle.move_to_end(token)
            if other:
                self._others_in_run.discard(token)
            return False
        idle.pop(token, None)
        if other and token not in self._others_in_run:
            self._others_in_run.add(token)
            return bool(self._again)
        return False

    def finish(self, token: T, now: float) -> list[T]:
        """The attempt ended (or was dropped while queued); returns the tokens
        admitted into the freed slot, if any."""
        if token in self._queued:
            del self._queued[token]
            for q in (self._fresh, self._again):
                try:
                    q.remove(token)
                    break
                except ValueError:
                    continue
            return []
        self._parked.discard(token)
        self._others_parked.discard(token)
        self._others.discard(token)
        self._others_in_run.discard(token)
        self._release(token)
        return self._fill(now)

    def make_room(self, now: float) -> RoomMade[T]:
        """While attempts wait for want of a slot (or of the others' share), park the
        longest-idle parkable attempts whose idle time has reached `park_idle_s`."""
        out: RoomMade[T] = RoomMade()
        out.admitted.extend(self._fill(now))
        while len(self._parked) < self.parked_max:
            candidate = self._to_park()
            if candidate is None:
                break  # nothing can be parked now; a finishing attempt frees a slot
            token, since = candidate
            due = since + self.park_idle_s
            if due > now:
                out.next_check_s = due - now
                break
            self._release(token)
            self._parked.add(token)
            if token in self._others:
                self._others_parked.add(token)  # still the service's work: keeps its share
            self.parked_total += 1
            out.park.append(token)
            out.admitted.extend(self._fill(now))
        return out

    def _to_park(self) -> tuple[T, float] | None:
        """The longest-idle attempt whose parking would let a waiter in (now, or once it has
        wound down), if any."""
        pools: tuple[OrderedDict[T, float], ...]
        if self._fresh and len(self._active) >= self.capacity:
            pools = (self._idle_first, self._idle_others)  # any slot will do
        elif self._again and self._others_held() >= self.others_max:
            if len(self._others_parked) >= min(len(self._again), self._parked_others_max):
                # Enough winding down for the waiters. Bounded too: an attempt whose service is
                # only slow to answer counts as idle, and parking it frees nothing until it ends.
                return None
            pools = (self._idle_others,)  # the share is short: it frees when they end
        elif self._again and len(self._active) >= self.capacity:
            pools = (self._idle_first, self._idle_others)
        else:
            return None
        heads = [next(iter(p.items())) for p in pools if p]
        return min(heads, key=lambda h: h[1]) if heads else None

    def _room_for(self, fresh: bool) -> bool:
        if len(self._active) >= self.capacity:
            return False
        return fresh or self._others_held() < self.others_max

    def _others_held(self) -> int:
        """Other attempts counted against their share: in flight, and not inside a run."""
        return len(self._others) - len(self._others_in_run)

    def _fill(self, now: float) -> list[T]:
        admitted: list[T] = []
        while True:
            fresh_ok = bool(self._fresh) and self._room_for(True)
            again_ok = bool(self._again) and self._room_for(False)
            if not (fresh_ok or again_ok):
                return admitted
            fresh = fresh_ok and (self._fresh_turn or not again_ok)
            self._fresh_turn = not fresh
            token = (self._fresh if fresh else self._again).popleft()
            i = 0 if fresh else 1
            self._wait_max[i] = max(self._wait_max[i], now - self._queued.pop(token))
            self._take_slot(token, now, fresh)
            admitted.append(token)

    def _take_slot(self, token: T, now: float, fresh: bool) -> None:
        self._active.add(token)
        if fresh:
            self._idle_first[token] = now  # a starting attempt has nothing open yet
        else:
            self._others.add(token)
            self._idle_others[token] = now

    def _release(self, token: T) -> None:
        """The token holds no slot any more (ended or parked); a parked one stays in `_others`."""
        self._active.discard(token)
        self._idle_first.pop(token, None)
        self._idle_others.pop(token, None)
