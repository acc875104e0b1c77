"""The processor's side of schedules: admin changes, a tick's timer, overlap policies, catch-up.

One durable timer per active schedule (its `next_ms`). When it fires, the latest missed ticks (at
most `catch_up_max`) run and the next tick is armed, all in one batch; each tick's invocation has
the idempotency key `schedule:<name>:<tick>`. Overlap while the previous tick still runs: `skip`
drops the tick, `buffer_one` keeps one tick that starts when the running one completes, `allow`
starts it anyway."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from perdure.protocol.ids import IdError, InvocationId
from perdure.server.processor.batch import Op
from perdure.server.processor.commands import TIMER_SCHEDULE, ChangeSchedule, InvokeRequest, Timer
from perdure.server.processor.core import ProcessorConfig
from perdure.server.processor.effects import Reply
from perdure.server.processor.identity import idempotent_id, invocation_id_for
from perdure.server.processor.locality import Locality
from perdure.server.processor.model import COMPLETED, Invocation, Target
from perdure.server.processor.partitions import PARTITION_MOVED, Partitions
from perdure.server.processor.schedules import (
    Schedule,
    count_ticks,
    tick_after,
    tick_key,
    ticks_missed,
    timer_id,
)
from perdure.server.processor.schema import SERVICE_TY, Schema, handler_kind
from perdure.server.storage.interface import Reader, Recovery

JSON_HEADERS = (("content-type", "application/json"),)
# What only a schedule's partition owner answers (the cluster router forwards these to it); a list
# and a deployment's declarations are answered by every node for the partitions it owns.
OWNER_ACTIONS = ("put", "delete", "pause", "resume", "get")


class ScheduleCommands(Partitions):
    def __init__(
        self,
        reader: Reader,
        schema: Schema,
        config: ProcessorConfig | None = None,
        locality: Locality | None = None,
    ) -> None:
        super().__init__(reader, schema, config, locality)
        self._schedules: dict[str, Schedule] = {}
        self._schedule_timers: dict[bytes, str] = {}
        self._timer_kinds[TIMER_SCHEDULE] = self._on_schedule_timer

    def recover(self, recovery: Recovery, now_ms: int) -> None:
        super().recover(recovery, now_ms)
        self._load_schedules(recovery.load_schedules(), None)

    def adopt_partitions(self, parts: set[int], recovery: Recovery, now_ms: int) -> None:
        """The schedules of adopted partitions are read again: the previous owner ticked them
        (next tick, counters) since this node last loaded them."""
        super().adopt_partitions(parts, recovery, now_ms)
        self._load_schedules(recovery.load_schedules(), parts)

    def _load_schedules(self, records: list[bytes], parts: set[int] | None) -> None:
        for data in records:
            s = Schedule.decode(data)
            if parts is not None and self._schedule_partition(s.name) not in parts:
                continue
            self._schedules[s.name] = s
            self._schedule_timers[timer_id(s.name)] = s.name
            if s.buffered_ms is not None and self._owns_schedule(s.name):
                prev = self._running_tick(s)
                if prev is None:
                    self._store(self._start_buffered(s))
                else:
                    self._on_complete[prev.id.raw] = self._tick_completed

    def _schedule_partition(self, name: str) -> int:
        """A schedule belongs to one partition, by the hash of its name (its timer's id): only
        that partition's owner arms and fires it, and its ticks' invocations live there."""
        return self._loc.of_id(timer_id(name))

    def _owns_schedule(self, name: str) -> bool:
        return self._schedule_partition(name) in self._loc.owned

    # ------------------------------------------------------------------ admin

    def _refuse_keyed(self, s: Schedule, token: int) -> bool:
        """On a cluster a tick's invocation must live in its schedule's partition: the overlap
        policies (skip, buffer_one) read whether the previous tick still runs, which only that
        partition's owner knows. A schedule of an object or workflow key in another partition is
        refused rather than ticking blind into another node's partition."""
        if s.key is None or not self._loc.bits or self._loc.of_key(s.key) == self._schedule_partition(s.name):
            return False
        self._answer(
            token,
            422,
            f"schedule '{s.name}': on a cluster a schedule can target an object or workflow key only in "
            "the schedule's own partition (its overlap policy needs the tick's invocation there); "
            "target a service handler that calls the key, or pick a schedule name in the key's partition",
        )
        return True

    def _on_change_schedule(self, cmd: ChangeSchedule) -> None:
        current = self._schedules.get(cmd.name)
        if cmd.action in OWNER_ACTIONS and not self._owns_schedule(cmd.name):
            self._answer(cmd.token, 503, PARTITION_MOVED)  # the router sends it to the owner
            return
        if cmd.action == "list":
            data: Any = [  # on a cluster the owned ones: the admin adds the others from the store
                s.to_json() for name, s in sorted(self._schedules.items()) if self._owns_schedule(name)
            ]
            self._effects.append(Reply(cmd.token, "ok", code=200, data=data))
            return
        if cmd.action == "put":
            assert cmd.schedule is not None
            self._put_schedule(cmd.schedule, current, cmd.token)
            return
        if cmd.action == "declare":
            self._declare(cmd.name, cmd.declared, cmd.token)
            return
        if current is None:
            self._answer(cmd.token, 404, f"schedule '{cmd.name}' not found")
            return
        if cmd.action == "delete":
            self._drop(current)
            self._answer(cmd.token, 200)
            return
        if cmd.action == "pause":
            self._disarm(current)
            current = self._store(replace(current, paused=True, next_ms=None, buffered_ms=None))
        elif cmd.action == "resume" and current.paused:
            current = self._store(replace(current, paused=False).with_next(self._now))
            self._arm(current)
        self._effects.append(Reply(cmd.token, "ok", code=200, data=current.to_json()))

    def _put_schedule(self, new: Schedule, current: Schedule | None, token: int) -> None:
        svc = self._schema.service(new.service)
        if svc is None or new.handler not in svc.handlers:
            self._answer(token, 404, f"handler '{new.service}/{new.handler}' not found")
            return
        if self._refuse_keyed(new, token):
            return
        s = self._replace_schedule(new, current)
        self._effects.append(Reply(token, "ok", code=201 if current is None else 200, data=s.to_json()))

    def _declare(self, service: str, declared: tuple[Schedule, ...], token: int) -> None:
        """A deployment of `service` declares exactly these schedules (the SDK helper): new or
        changed ones are put (an operator's pause is kept), unchanged ones are left alone (so a
        re-registration neither re-arms nor doubles a tick), ones it no longer declares go."""
        # On a cluster each node applies the declarations of the partitions it owns (every node
        # applies them when the registry changes and when it takes partitions over).
        declared = tuple(s for s in declared if self._owns_schedule(s.name))
        names = {s.name for s in declared}
        for s in declared:
            assert s.declared_by == service
            current = self._schedules.get(s.name)
            if current is not None and current.spec() == s.spec():
                continue
            if current is not None:
                s = replace(s, paused=current.paused)
            self._replace_schedule(s, current)
        for old in list(self._schedules.values()):
            if old.declared_by == service and old.name not in names and self._owns_schedule(old.name):
                self._drop(old)
        data = [self._schedules[n].to_json() for n in sorted(names)]
        self._effects.append(Reply(token, "ok", code=200, data=data))

    def _replace_schedule(self, new: Schedule, current: Schedule | None) -> Schedule:
        """Store `new` in place of `current` (keeping its counters, last tick and interval anchor)
        and arm its next tick."""
        if current is not None:
            self._disarm(current)
            same_interval = current.every_ms == new.every_ms and current.cron is None and new.cron is None
            new = replace(
                new,
                anchor_ms=current.anchor_ms if same_interval else self._now,
                last_tick_ms=current.last_tick_ms,
                last_invocation=current.last_invocation,
                fired=current.fired,
                skipped=current.skipped,
            )
        else:
            new = replace(new, anchor_ms=self._now)
        s = self._store(new.with_next(self._now))
        self._arm(s)
        return s

    def _store(self, s: Schedule) -> Schedule:
        self._schedules[s.name] = s
        self._schedule_timers[timer_id(s.name)] = s.name
        self._batch.op(Op.SCHEDULE_PUT, s.name, s.encode())
        return s

    def _drop(self, s: Schedule) -> None:
        self._disarm(s)
        del self._schedules[s.name]
        self._batch.op(Op.SCHEDULE_DELETE, s.name)

    def _arm(self, s: Schedule) -> None:
        if s.next_ms is not None:
            self._add_timer(Timer(s.next_ms, timer_id(s.name), TIMER_SCHEDULE))

    def _disarm(self, s: Schedule) -> None:
        if s.next_ms is not None:
            self._batch.timers_delete.append(Timer(s.next_ms, timer_id(s.name), TIMER_SCHEDULE))

    # ------------------------------------------------------------------ ticks

    def _on_schedule_timer(self, timer: Timer) -> None:
        name = self._schedule_timers.get(timer.invocation)
        s = self._schedules.get(name) if name is not None else None
        if s is None or s.paused or s.next_ms != timer.wake_at_ms:
            return  # deleted, paused or re-armed since: a stale firing
        assert s.next_ms is not None
        due = ticks_missed(s, self._now)
        missed = count_ticks(s, s.next_ms, self._now) - len(due)
        s = replace(s, skipped=s.skipped + max(0, missed))
        for tick in due:
            s = self._tick(s, tick)
        s = self._store(replace(s, next_ms=tick_after(s, self._now)))
        self._arm(s)

    def _tick(self, s: Schedule, tick: int) -> Schedule:
        s = replace(s, last_tick_ms=tick)
        prev = self._running_tick(s)
        if prev is not None and s.overlap == "skip":
            return replace(s, skipped=s.skipped + 1)
        if prev is not None and s.overlap == "buffer_one":
            self._on_complete[prev.id.raw] = self._tick_completed
            dropped = 1 if s.buffered_ms is not None else 0
            return replace(s, buffered_ms=tick, skipped=s.skipped + dropped)
        return replace(s, last_invocation=self._invoke_tick(s, tick), fired=s.fired + 1)

    def _tick_completed(self, inv: Invocation) -> None:
        """A tick's invocation ended: a buffered tick of its schedule starts now."""
        for s in list(self._schedules.values()):
            if s.last_invocation == inv.id_str and s.buffered_ms is not None:
                self._store(self._start_buffered(s))

    def _start_buffered(self, s: Schedule) -> Schedule:
        assert s.buffered_ms is not None
        tick = s.buffered_ms
        return replace(s, buffered_ms=None, last_invocation=self._invoke_tick(s, tick), fired=s.fired + 1)

    def _running_tick(self, s: Schedule) -> Invocation | None:
        if s.last_invocation is None:
            return None
        try:
            inv = self._get(InvocationId.parse(s.last_invocation).raw)
        except IdError:
            return None
        return inv if inv is not None and inv.status != COMPLETED else None

    def _invoke_tick(self, s: Schedule, tick: int) -> str:
        """Create the tick's invocation (or find it: a replay of the same tick); its id."""
        svc = self._schema.service(s.service)
        handler = svc.handlers.get(s.handler) if svc is not None else None
        if svc is None or handler is None:
            target = Target(s.service, s.handler, s.key, "service", None)
            ikey = tick_key(s.name, tick)
            req = InvokeRequest(target=target, input=s.body, headers=JSON_HEADERS, idempotency_key=ikey)
        else:
            keyed = svc.ty != "SERVICE"
            target = Target(
                s.service, s.handler, s.key if keyed else None, SERVICE_TY[svc.ty], handler_kind(svc, handler)
            )
            req = InvokeRequest(
                target=target,
                input=s.body,
                headers=JSON_HEADERS,
                idempotency_key=tick_key(s.name, tick),
                idempotency_retention_ms=svc.idempotency_retention_ms,
                workflow_retention_ms=svc.idempotency_retention_ms,
                journal_retention_ms=svc.journal_retention_ms,
            )
        # A service tick lives in its schedule's partition (on one node: as any idempotent call).
        here = self._schedule_partition(s.name)
        assert req.idempotency_key is not None
        t = req.target
        iid = (
            invocation_id_for(t, req.idempotency_key)
            if t.key is not None
            else idempotent_id(
                t.service, None, t.handler, req.idempotency_key, lambda pk: self._loc.pk_in(here, pk)
            )
        )
        existing = self._get(iid.raw)
        if existing is None or self._expired(existing):
            if existing is not None:
                self._purge(existing)
            self._create(
                iid, req, invoked_by="schedule", caller=None, by_id=None, by_target=f"schedule:{s.name}"
            )
        return str(iid)
