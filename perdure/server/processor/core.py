"""The processor's state and the mechanisms every kind of command uses:
invocation records, the journal, locks and inboxes, attempts (retry delays in
`retries.py`), timers (an invocation's armed timers in `armed.py`), notifications,
completion. The commands themselves live in `journal.py` (messages from services)
and `requests.py` (ingress and admin); a cluster node's partitions in `partitions.py`."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.protocol.ids import SIGNAL_CANCEL, IdError, InvocationId, random_seed_of
from perdure.record import record
from perdure.server.processor import mail
from perdure.server.processor import promises as prom
from perdure.server.processor.armed import armed_timers
from perdure.server.processor.batch import Op, WriteBatch, index_of
from perdure.server.processor.commands import (
    TIMER_ADMIT,
    TIMER_DELAYED_INVOKE,
    TIMER_RETRY,
    TIMER_SLEEP,
    AttemptFailed,
    InvokeRequest,
    Timer,
)
from perdure.server.processor.effects import (
    AbortAttempt,
    ArmTimer,
    Completed,
    Effect,
    Reply,
    SendToAttempt,
    StartAttempt,
)
from perdure.server.processor.limits import Limits
from perdure.server.processor.locality import Locality
from perdure.server.processor.mail import Mail, MailNotify
from perdure.server.processor.model import (
    COMPLETED,
    INBOXED,
    INVOKED,
    PAUSED,
    READY,
    SCHEDULED,
    SUSPENDED,
    CallerRef,
    Entry,
    Failure,
    Invocation,
    Outcome,
    Target,
    encode_record,
)
from perdure.server.processor.retries import retry_delay
from perdure.server.processor.schema import Schema, ServiceView, policy_of
from perdure.server.storage.interface import Reader, Recovery

EVICTABLE = frozenset((INBOXED, SCHEDULED, READY, SUSPENDED, COMPLETED))
ADMIT_TIMER_ID = bytes(24)  # the timer that lets rate-limited invocations start is no invocation's
KILLED = Failure(409, "killed")
CANCELLED = Failure(409, "cancelled")


@record
class ProcessorConfig:
    eager_state_size_max: int = 32 * 1024 * 1024
    timers_loaded_max: int = 10_000  # the timer service loads the rest lazily
    # Object/workflow keys whose state (and promises) stay cached; beyond this the
    # oldest are dropped after a commit, when the cache equals the store.
    cached_keys_max: int = 10_000


class ProcessorCore:
    def __init__(
        self,
        reader: Reader,
        schema: Schema,
        config: ProcessorConfig | None = None,
        locality: Locality | None = None,
    ) -> None:
        self._reader = reader
        self._loc = locality or Locality()
        self._schema = schema
        self._config = config or ProcessorConfig()
        self._resident: dict[bytes, Invocation] = {}
        self._waiters: dict[bytes, list[int]] = {}
        self._locks: dict[tuple[str, str], bytes] = {}
        self._inbox: dict[tuple[str, str], deque[tuple[int, bytes]]] = {}
        self._inbox_seq = 0
        self._state: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self._promises = prom.PromiseCache(reader)
        self._dedup: dict[str, int] = {}  # ingested record streams: producer -> highest offset
        self._attempt_seq = 0
        self._batch = WriteBatch()
        self._effects: list[Effect] = []
        self._dirty: dict[bytes, Invocation] = {}
        self._evict: set[bytes] = set()  # resident records that may leave memory after the commit
        self._now = 0
        self._limits = Limits()
        self._pumping = False
        self._pump_again = False
        self._admit_timer: Timer | None = None
        # Extensions (schedules): timer kinds handled elsewhere, and what to do when an invocation ends.
        self._timer_kinds: dict[int, Callable[[Timer], None]] = {}
        self._on_complete: dict[bytes, Callable[[Invocation], None]] = {}

    def recover(self, recovery: Recovery, now_ms: int) -> None:
        """Load what a (re)started processor needs and restart live invocations."""
        self._limits.load(*recovery.load_limits())
        self._load(recovery, now_ms)

    def _load(self, recovery: Recovery, now_ms: int) -> None:
        """Add what `recovery` holds (all partitions, or the ones just adopted) to memory."""
        self._now = now_ms
        self._locks.update(recovery.load_locks())
        inbox = {k: deque(v) for k, v in recovery.load_inbox().items()}
        self._inbox.update(inbox)
        # Sequence numbers only grow: an adopted key's queue may have come from another node.
        self._inbox_seq = max(self._inbox_seq, max((s for q in inbox.values() for s, _ in q), default=0))
        for t in recovery.load_timers(self._config.timers_loaded_max):
            self._effects.append(ArmTimer(t))
        for inv in recovery.load_running():
            self._rehydrate(inv)
            self._resident[inv.id.raw] = inv
            if inv.status == INVOKED and (inv.next_retry_at_ms is None or inv.next_retry_at_ms <= now_ms):
                self._start_attempt(inv)
        self._pump()

    def take(self) -> tuple[WriteBatch, list[Effect]]:
        """The batch to commit and the effects to release after the commit."""
        records = self._batch.invocations
        for raw, inv in self._dirty.items():
            if raw in records and records[raw] is None:
                # Purged in this batch: written only if the id was created again (an idempotent call
                # or a workflow run after its retention), so its new journal comes with its record.
                live = self._resident.get(raw)
                if live is None:
                    continue
                inv = live
            records[raw] = encode_record(inv)
            self._batch.index[raw] = index_of(inv)
        self._dirty.clear()
        batch, effects = self._batch, self._effects
        self._batch, self._effects = WriteBatch(), []
        return batch, effects

    def committed(self) -> None:
        """The last taken batch is durable: drop records that need not stay in memory."""
        resident = self._resident
        for raw in self._evict:
            inv = resident.get(raw)
            if inv is not None and inv.status in EVICTABLE and not inv.attempt_live:
                del resident[raw]
        self._evict.clear()
        if len(self._state) > self._config.cached_keys_max:
            for key in list(self._state)[: len(self._state) // 2]:
                del self._state[key]
        self._promises.trim(self._config.cached_keys_max)
        if len(self._dedup) > self._config.cached_keys_max:
            self._dedup.clear()  # committed: the store has every mark

    def resident(self) -> dict[bytes, Invocation]:
        return self._resident

    def locks(self) -> dict[tuple[str, str], bytes]:
        return self._locks

    def limit_usage(self, now_ms: int) -> list[dict[str, Any]]:
        """Each enabled rule's counts and buckets (for /metrics)."""
        return self._limits.usage(now_ms)

    def _get(self, raw: bytes) -> Invocation | None:
        inv = self._resident.get(raw)
        if inv is not None:
            return inv
        inv = self._reader.get_invocation(raw)
        if inv is None:
            return None
        if inv.status != COMPLETED:
            inv.journal = self._reader.get_journal(raw)
            self._rehydrate(inv)
        self._resident[raw] = inv
        self._evict.add(raw)
        return inv

    @staticmethod
    def _rehydrate(inv: Invocation) -> None:
        """Derive the in-memory indexes of completions and signals from the journal."""
        inv.completed_ids.clear()
        inv.signals_seen.clear()
        for e in inv.journal:
            if e.type >= 0x8000:
                n = decode(e.type, e.body)
                which = n.WhichOneof("id")
                if which == "completion_id":
                    inv.completed_ids.add(n.completion_id)
                elif which == "signal_id":
                    inv.signals_seen.add(n.signal_id)
        assert inv.journal_length == len(inv.journal), "journal length disagrees with stored entries"

    def _touch(self, inv: Invocation) -> None:
        inv.modified_at_ms = self._now
        self._dirty[inv.id.raw] = inv
        if inv.status in EVICTABLE:
            self._evict.add(inv.id.raw)

    def _append(self, inv: Invocation, msg_type: int, body: bytes) -> None:
        idx = len(inv.journal)
        assert idx == inv.journal_length
        inv.journal.append(Entry(msg_type, body, self._now))
        inv.journal_length = idx + 1
        inv.last_stored_entry_at_ms = self._now
        inv.retries_since_stored_entry = 0
        self._batch.journal.append((inv.id.raw, idx, msg_type, body, self._now))
        self._touch(inv)

    def _expired(self, inv: Invocation) -> bool:
        return (
            inv.status == COMPLETED
            and inv.completed_at_ms is not None
            and inv.completed_at_ms + inv.completion_retention_ms <= self._now
        )

    def _journal_expired(self, inv: Invocation) -> bool:
        """Completed, journal still kept, and its (shorter) journal retention is over."""
        return (
            inv.status == COMPLETED
            and inv.completed_at_ms is not None
            and inv.journal_length > 0
            and inv.completed_at_ms + inv.journal_retention_ms <= self._now
        )

    def _create(
        self,
        iid: InvocationId,
        req: InvokeRequest,
        *,
        invoked_by: str,
        caller: CallerRef | None,
        by_id: str | None,
        by_target: str | None,
    ) -> Invocation:
        t = req.target
        retention = req.workflow_retention_ms if t.handler_ty == "workflow" else req.idempotency_retention_ms
        inv = Invocation(
            id=iid,
            target=t,
            status=SCHEDULED,
            created_at_ms=self._now,
            modified_at_ms=self._now,
            invoked_by=invoked_by,
            invoked_by_id=by_id,
            invoked_by_target=by_target,
            caller=caller,
            idempotency_key=req.idempotency_key,
            completion_retention_ms=retention,
            journal_retention_ms=req.journal_retention_ms,
            last_stored_entry_at_ms=self._now,
            trace_parent=req.trace_parent,
        )
        self._resident[iid.raw] = inv
        headers = [pb.Header(key=k, value=v) for k, v in req.headers]
        body = pb.InputCommandMessage(headers=headers, value=pb.Value(content=req.input)).SerializeToString()
        self._append(inv, T.INPUT, body)
        if req.execution_time_ms is not None and req.execution_time_ms > self._now:
            inv.execution_time_ms = req.execution_time_ms
            self._add_timer(Timer(req.execution_time_ms, iid.raw, TIMER_DELAYED_INVOKE))
        else:
            self._admit(inv)
        return inv

    def _admit(self, inv: Invocation) -> None:
        """Start the invocation, or queue it behind the holder of its key."""
        t = inv.target
        if t.exclusive:
            assert t.key is not None
            lk = (t.service, t.key)
            if lk in self._locks:
                self._inbox_seq += 1
                self._inbox.setdefault(lk, deque()).append((self._inbox_seq, inv.id.raw))
                self._batch.op(Op.INBOX_ADD, t.service, t.key, self._inbox_seq, inv.id.raw)
                inv.status = INBOXED
                inv.inboxed_at_ms = self._now
                self._touch(inv)
                return
            self._locks[lk] = inv.id.raw
            self._batch.op(Op.LOCK_SET, t.service, t.key, inv.id.raw)
        self._begin(inv)

    def _begin(self, inv: Invocation) -> None:
        """Start the invocation, unless a concurrency or rate rule holds it back: then it waits,
        durably, as ready, until `_pump` finds the rules let it go."""
        if self._limits.arrive(inv.id.raw, inv.target, self._now, self._batch) is False:
            inv.status = READY
            inv.limit_seq = self._limits.entries[inv.id.raw].seq
            self._touch(inv)
            self._pump()
            return
        inv.status = INVOKED
        self._touch(inv)
        self._start_attempt(inv)

    def _pump(self) -> None:
        """Start the queued invocations the rules now let go; arm a timer for the next token."""
        if self._pumping:  # a start completed something (service gone): go round again
            self._pump_again = True
            return
        self._pumping = True
        try:
            again = True
            while again:
                self._pump_again = False
                started, wake_ms = self._limits.ready(self._now, self._batch)
                for raw in started:
                    if not self._loc.owns_id(raw):
                        continue  # a cluster: rules span partitions; another node starts this one
                    inv = self._get(raw)
                    if inv is None or inv.status != READY:
                        self._limits.release(raw, self._batch)
                        continue
                    inv.status = INVOKED
                    self._touch(inv)
                    self._start_attempt(inv)
                if wake_ms is not None and (
                    self._admit_timer is None or wake_ms < self._admit_timer.wake_at_ms
                ):
                    self._admit_timer = Timer(wake_ms, ADMIT_TIMER_ID, TIMER_ADMIT)
                    self._add_timer(self._admit_timer)
                again = self._pump_again
        finally:
            self._pumping = False

    def _release_lock(self, inv: Invocation) -> None:
        t = inv.target
        if not t.exclusive:
            return
        assert t.key is not None
        lk = (t.service, t.key)
        if self._locks.get(lk) != inv.id.raw:
            return
        queue = self._inbox.get(lk)
        while queue:
            seq, raw = queue.popleft()
            self._batch.op(Op.INBOX_DELETE, t.service, t.key, seq)
            nxt = self._get(raw)
            if nxt is None or nxt.status != INBOXED:
                continue
            if not queue:
                del self._inbox[lk]
            self._locks[lk] = raw
            self._batch.op(Op.LOCK_SET, t.service, t.key, raw)
            self._begin(nxt)
            return
        self._inbox.pop(lk, None)
        del self._locks[lk]
        self._batch.op(Op.LOCK_DELETE, t.service, t.key)

    def _start_attempt(self, inv: Invocation) -> None:
        svc = self._schema.service(inv.target.service)
        deployment = inv.pinned_deployment_id or (svc.deployment_id if svc else None)
        if svc is None or deployment is None:
            self._complete(inv, Outcome(failure=Failure(404, f"service '{inv.target.service}' not found")))
            return
        if inv.pinned_deployment_id is None:
            inv.pinned_deployment_id = deployment
        self._attempt_seq += 1
        inv.attempt = self._attempt_seq
        inv.attempt_live = True
        inv.retry_count += 1
        inv.next_retry_at_ms = None
        inv.last_start_at_ms = self._now
        if inv.running_at_ms is None:
            inv.running_at_ms = self._now
        inv.last_attempt_deployment_id = deployment
        self._touch(inv)
        state, partial = self._eager_state(inv, svc)
        policy = policy_of(svc, inv.target.handler)
        self._effects.append(
            StartAttempt(
                invocation=inv.id.raw,
                invocation_id=inv.id_str,
                attempt=inv.attempt,
                target=inv.target,
                deployment_id=deployment,
                journal=tuple(inv.journal),
                state=state,
                partial_state=partial,
                retry_count_since_last_stored_entry=inv.retries_since_stored_entry,
                duration_since_last_stored_entry_ms=max(0, self._now - inv.last_stored_entry_at_ms),
                random_seed=random_seed_of(inv.id.raw),
                inactivity_timeout_ms=policy.inactivity_timeout_ms,
                abort_timeout_ms=policy.abort_timeout_ms,
                trace_parent=inv.trace_parent,
            )
        )

    def _eager_state(self, inv: Invocation, svc: ServiceView) -> tuple[tuple[tuple[bytes, bytes], ...], bool]:
        if inv.target.key is None or _lazy_state(svc, inv.target.handler):
            return (), True  # partial: the SDK asks for what it reads
        st = self._state_of(inv.target)
        size = sum(len(k) + len(v) for k, v in st.items())
        if size > self._config.eager_state_size_max:
            return (), True
        return tuple(st.items()), False

    def _on_attempt_failed(self, cmd: AttemptFailed) -> None:
        inv = self._resident.get(cmd.invocation)
        if inv is None or inv.attempt != cmd.attempt or not inv.attempt_live:
            return
        self._attempt_failed(inv, cmd)

    def _attempt_failed(self, inv: Invocation, cmd: AttemptFailed) -> None:
        inv.attempt_live = False
        inv.retries_since_stored_entry += 1
        inv.last_failure = {
            "code": cmd.code,
            "message": cmd.message,
            "stacktrace": cmd.stacktrace,
            "related_command_index": cmd.related_command_index,
            "related_command_name": cmd.related_command_name,
            "related_command_type": cmd.related_command_type,
            "at": self._now,
        }
        if cmd.server:
            inv.last_attempt_server = cmd.server
        svc = self._schema.service(inv.target.service)
        policy = None if svc is None else policy_of(svc, inv.target.handler)
        delay = retry_delay(policy, inv.retry_count, cmd.next_retry_delay_ms)
        if delay is None:  # attempts exhausted
            if policy is not None and policy.retry_on_max_attempts == "KILL":
                self._complete(inv, Outcome(failure=Failure(cmd.code, cmd.message)))
            else:
                inv.status = PAUSED
                self._touch(inv)
            return
        inv.next_retry_at_ms = self._now + delay
        self._touch(inv)
        self._add_timer(Timer(inv.next_retry_at_ms, inv.id.raw, TIMER_RETRY, inv.retry_count))

    def _add_timer(self, timer: Timer) -> None:
        self._batch.timers_add.append(timer)
        self._effects.append(ArmTimer(timer))

    def _on_timer(self, timer: Timer) -> None:
        self._batch.timers_delete.append(timer)
        extension = self._timer_kinds.get(timer.kind)
        if extension is not None:
            extension(timer)
            return
        if timer.kind == TIMER_ADMIT:
            if self._admit_timer is not None and self._admit_timer.wake_at_ms <= timer.wake_at_ms:
                self._admit_timer = None
            self._pump()
            return
        inv = self._get(timer.invocation)
        if inv is None or inv.status == COMPLETED:
            return
        if timer.kind == TIMER_SLEEP:
            n = pb.NotificationMessage(completion_id=timer.arg, void=pb.Void())
            self._notify(inv, T.SLEEP_COMPLETION, n)
        elif timer.kind == TIMER_RETRY:
            if inv.status == INVOKED and not inv.attempt_live and inv.retry_count == timer.arg:
                self._start_attempt(inv)
        elif timer.kind == TIMER_DELAYED_INVOKE and inv.status == SCHEDULED:
            self._admit(inv)

    def _notify(self, inv: Invocation, msg_type: int, n: Any) -> None:
        """Journal a notification and deliver it: to the live attempt, or by
        resuming a suspended invocation that waits for it."""
        if inv.status == COMPLETED:
            return
        which = n.WhichOneof("id")
        if which == "completion_id":
            if n.completion_id in inv.completed_ids:
                return  # each completion is journaled once
            inv.completed_ids.add(n.completion_id)
        elif which == "signal_id":
            if n.signal_id in inv.signals_seen:
                return
            inv.signals_seen.add(n.signal_id)
        body = n.SerializeToString()
        self._append(inv, msg_type, body)
        if inv.attempt_live:
            self._effects.append(SendToAttempt(inv.id.raw, inv.attempt, msg_type, body))
        elif inv.status == SUSPENDED and self._wakes(inv):
            inv.status = INVOKED
            inv.waiting_completions = []
            inv.waiting_signals = []
            self._start_attempt(inv)

    @staticmethod
    def _wakes(inv: Invocation) -> bool:
        return any(c in inv.completed_ids for c in inv.waiting_completions) or any(
            s in inv.signals_seen for s in inv.waiting_signals
        )

    def _signal(self, raw: bytes, idx: int, result: dict[str, Any]) -> None:
        target = self._get(raw)
        if target is None or target.status == COMPLETED:
            return
        if idx == SIGNAL_CANCEL and target.status in (INBOXED, SCHEDULED, READY):
            self._complete(target, Outcome(failure=CANCELLED))
            return
        n = pb.NotificationMessage(signal_id=idx, **result)
        self._notify(target, T.SIGNAL, n)

    def _state_of(self, t: Target) -> dict[bytes, bytes]:
        if t.key is None:
            return {}
        sk = (t.service, t.key)
        st = self._state.get(sk)
        if st is None:
            st = self._reader.get_state(t.service, t.key)
            self._state[sk] = st
        return st

    def _deliver_outcome(self, ref: CallerRef, outcome: Outcome) -> None:
        self._deliver_note(ref, _result_notification(ref.completion_id, outcome))

    def _deliver_note(self, ref: CallerRef, n: Any) -> None:
        """A call's or an attach's answer into the journal of `ref`'s invocation, or through the
        partition mailbox when another cluster node owns that invocation's partition."""
        try:
            raw = InvocationId.parse(ref.invocation_id).raw
        except IdError:
            return
        if not self._loc.owns_id(raw):
            self._post(raw, MailNotify(raw, ref.notification_type, n.SerializeToString()))
            return
        caller = self._get(raw)
        if caller is not None:
            self._notify(caller, ref.notification_type, n)

    def _post(self, raw: bytes, m: Mail) -> None:
        """Send `m` to the partition of invocation `raw` (another node's) in this batch's outbox."""
        self._batch.outbox.append((self._loc.of_id(raw), mail.encode(m)))

    def _complete(self, inv: Invocation, outcome: Outcome) -> None:
        raw = inv.id.raw
        was = inv.status
        if inv.attempt_live:
            self._effects.append(AbortAttempt(raw, inv.attempt))
            inv.attempt_live = False
        self._drop_timers(inv)
        inv.status = COMPLETED
        inv.outcome = outcome
        inv.completed_at_ms = self._now
        inv.next_retry_at_ms = None
        self._touch(inv)
        self._effects.append(
            Completed(inv.id_str, inv.target, outcome.failure, inv.created_at_ms, self._now, inv.trace_parent)
        )
        for token in self._waiters.pop(raw, []):
            self._reply_outcome(token, inv, with_expiry=False)
        if inv.caller is not None:
            self._deliver_outcome(inv.caller, outcome)
        for ref in inv.attached:
            self._deliver_outcome(ref, outcome)
        inv.attached = []
        freed = self._limits.release(raw, self._batch)  # before the lock: the next on the key may take it
        if was == INBOXED:
            self._drop_from_inbox(inv)
        elif was != SCHEDULED:
            self._release_lock(inv)
        if freed:
            self._pump()
        hook = self._on_complete.pop(raw, None)
        if hook is not None:
            hook(inv)
        if inv.completion_retention_ms <= 0:
            self._purge(inv)
        elif inv.journal_retention_ms <= 0:
            self._purge_journal(inv)

    def _drop_timers(self, inv: Invocation) -> None:
        """A completed invocation leaves no timers behind (a killed sleeper, a pending retry)."""
        self._batch.timers_delete.extend(armed_timers(inv))

    def _drop_from_inbox(self, inv: Invocation) -> None:
        t = inv.target
        assert t.key is not None
        q = self._inbox.get((t.service, t.key))
        if not q:
            return
        for item in list(q):
            if item[1] == inv.id.raw:
                q.remove(item)
                self._batch.op(Op.INBOX_DELETE, t.service, t.key, item[0])
        if not q:
            del self._inbox[(t.service, t.key)]

    def _purge(self, inv: Invocation) -> None:
        raw = inv.id.raw
        t = inv.target
        if t.handler_ty == "workflow" and t.key is not None:
            self._state.pop((t.service, t.key), None)
            self._batch.op(Op.STATE_CLEAR, t.service, t.key)
            self._promises.forget(t.service, t.key)
            self._batch.op(Op.PROMISE_CLEAR, t.service, t.key)
        self._resident.pop(raw, None)
        self._dirty.pop(raw, None)
        self._batch.invocations[raw] = None
        self._batch.journal = [j for j in self._batch.journal if j[0] != raw]
        self._batch.journal_delete.append(raw)

    def _purge_journal(self, inv: Invocation) -> None:
        """Drop a completed invocation's journal; its record and output stay for their retention.
        The store then files the record under its completion expiry (see `record_expires_at_ms`)."""
        assert inv.status == COMPLETED
        raw = inv.id.raw
        inv.journal = []
        inv.journal_length = 0
        self._batch.journal = [j for j in self._batch.journal if j[0] != raw]
        self._batch.journal_delete.append(raw)
        self._touch(inv)

    def _reply_outcome(self, token: int, inv: Invocation, *, with_expiry: bool) -> None:
        expires = None
        if with_expiry and inv.completed_at_ms is not None:
            expires = inv.completed_at_ms + inv.completion_retention_ms
        self._effects.append(
            Reply(token, "outcome", invocation_id=inv.id_str, outcome=inv.outcome, expires_at_ms=expires)
        )

    def _answer(self, token: int, code: int, message: str = "") -> None:
        kind = "ok" if code < 300 else "error"
        self._effects.append(Reply(token, kind, code=code, message=message))


def _lazy_state(svc: ServiceView, handler: str) -> bool:
    h = svc.handlers.get(handler)
    override = getattr(h, "enable_lazy_state", None)
    if override is not None:
        return bool(override)
    return bool(getattr(svc, "enable_lazy_state", False))


def _result_notification(cid: int, outcome: Outcome) -> Any:
    if outcome.failure is not None:
        f = pb.Failure(code=outcome.failure.code, message=outcome.failure.message)
        return pb.NotificationMessage(completion_id=cid, failure=f)
    return pb.NotificationMessage(completion_id=cid, value=pb.Value(content=outcome.value or b""))
