"""The partition processor: a deterministic state machine.

`apply(command, now_ms)` changes in-memory state and records the storage
mutations (a `WriteBatch`) and the effects they cause; `take()` hands both to
the runtime, which commits the batch (one fsync) and only then releases the
effects. No sockets, sleeps or clocks in here: that is what lets a seeded
simulation drive it and crash it anywhere."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode, is_command
from perdure.protocol.errors import ProtocolError
from perdure.protocol.ids import SIGNAL_CANCEL, IdError, InvocationId, random_seed_of
from perdure.server.processor import promises as prom
from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.processor.commands import (
    TIMER_DELAYED_INVOKE,
    TIMER_RETRY,
    TIMER_SLEEP,
    Attach,
    AttemptFailed,
    AttemptOpened,
    Command,
    CompleteAwakeable,
    Invoke,
    InvokeRequest,
    ReplaceState,
    SdkMessage,
    Terminate,
    Timer,
    TimerFired,
)
from perdure.server.processor.effects import (
    AbortAttempt,
    ArmTimer,
    Effect,
    Reply,
    SendToAttempt,
    StartAttempt,
)
from perdure.server.processor.identity import idempotent_id, invocation_id_for, workflow_id
from perdure.server.processor.model import (
    COMPLETED,
    INBOXED,
    INVOKED,
    PAUSED,
    SCHEDULED,
    SUSPENDED,
    TIME_MS_MAX,
    CallerRef,
    Entry,
    Failure,
    Invocation,
    Outcome,
    Target,
    encode_record,
)
from perdure.server.processor.schema import SERVICE_TY, Schema, ServiceView, handler_kind
from perdure.server.storage.interface import Reader, Recovery

EVICTABLE = frozenset((INBOXED, SCHEDULED, SUSPENDED, COMPLETED))
KILLED = Failure(409, "killed")
CANCELLED = Failure(409, "cancelled")


@dataclass(frozen=True, slots=True)
class ProcessorConfig:
    eager_state_size_max: int = 32 * 1024 * 1024
    timers_loaded_max: int = 10_000  # the timer service loads the rest lazily


class Processor:
    def __init__(self, reader: Reader, schema: Schema, config: ProcessorConfig | None = None) -> None:
        self._reader = reader
        self._schema = schema
        self._config = config or ProcessorConfig()
        self._resident: dict[bytes, Invocation] = {}
        self._waiters: dict[bytes, list[int]] = {}
        self._locks: dict[tuple[str, str], bytes] = {}
        self._inbox: dict[tuple[str, str], deque[tuple[int, bytes]]] = {}
        self._inbox_seq = 0
        self._state: dict[tuple[str, str], dict[bytes, bytes]] = {}
        self._promises = prom.PromiseCache(reader)
        self._attempt_seq = 0
        self._batch = WriteBatch()
        self._effects: list[Effect] = []
        self._dirty: dict[bytes, Invocation] = {}
        self._evict: set[bytes] = set()  # resident records that may leave memory after the commit
        self._now = 0

    # ------------------------------------------------------------------ runtime interface

    def recover(self, recovery: Recovery, now_ms: int) -> None:
        """Load what a (re)started processor needs and restart live invocations."""
        self._now = now_ms
        self._locks = recovery.load_locks()
        self._inbox = {k: deque(v) for k, v in recovery.load_inbox().items()}
        self._inbox_seq = max((seq for q in self._inbox.values() for seq, _ in q), default=0)
        for t in recovery.load_timers(self._config.timers_loaded_max):
            self._effects.append(ArmTimer(t))
        for inv in recovery.load_running():
            self._rehydrate(inv)
            self._resident[inv.id.raw] = inv
            if inv.status == INVOKED and (inv.next_retry_at_ms is None or inv.next_retry_at_ms <= now_ms):
                self._start_attempt(inv)

    def apply(self, cmd: Command, now_ms: int) -> None:
        self._now = now_ms
        if isinstance(cmd, SdkMessage):
            self._on_sdk_message(cmd)
        elif isinstance(cmd, Invoke):
            self._on_invoke(cmd)
        elif isinstance(cmd, TimerFired):
            self._on_timer(cmd.timer)
        elif isinstance(cmd, AttemptFailed):
            self._on_attempt_failed(cmd)
        elif isinstance(cmd, AttemptOpened):
            inv = self._resident.get(cmd.invocation)
            if inv is not None and inv.attempt == cmd.attempt:
                inv.last_attempt_server = cmd.server
        elif isinstance(cmd, Attach):
            self._on_attach(cmd)
        elif isinstance(cmd, CompleteAwakeable):
            self._on_complete_awakeable(cmd)
        elif isinstance(cmd, Terminate):
            self._on_terminate(cmd)
        elif isinstance(cmd, ReplaceState):
            self._on_replace_state(cmd)
        else:  # pragma: no cover - exhaustive
            raise AssertionError(f"unknown command {cmd!r}")

    def take(self) -> tuple[WriteBatch, list[Effect]]:
        """The batch to commit and the effects to release after the commit."""
        for raw, inv in self._dirty.items():
            if raw not in self._batch.invocations or self._batch.invocations[raw] is not None:
                self._batch.invocations[raw] = encode_record(inv)
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

    # read-only views for introspection and tests
    def resident(self) -> dict[bytes, Invocation]:
        return self._resident

    def locks(self) -> dict[tuple[str, str], bytes]:
        return self._locks

    # ------------------------------------------------------------------ invocation records

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

    # ------------------------------------------------------------------ ingress

    def _on_invoke(self, cmd: Invoke) -> None:
        req = cmd.request
        iid = invocation_id_for(req.target, req.idempotency_key)
        existing = self._get(iid.raw)
        if existing is not None and self._expired(existing):
            self._purge(existing)
            existing = None
        if existing is not None:
            self._on_duplicate(existing, cmd)
            return
        inv = self._create(iid, req, invoked_by="ingress", caller=None, by_id=None, by_target=None)
        if cmd.mode == "send":
            self._effects.append(
                Reply(
                    cmd.token,
                    "accepted",
                    invocation_id=str(iid),
                    status="Accepted",
                    execution_time_ms=inv.execution_time_ms,
                )
            )
        else:
            self._waiters.setdefault(iid.raw, []).append(cmd.token)

    def _on_duplicate(self, inv: Invocation, cmd: Invoke) -> None:
        if cmd.mode == "send":
            self._effects.append(
                Reply(cmd.token, "accepted", invocation_id=inv.id_str, status="PreviouslyAccepted")
            )
            return
        is_workflow_run = inv.target.handler_ty == "workflow"
        if inv.status == COMPLETED:
            if is_workflow_run:
                self._effects.append(
                    Reply(
                        cmd.token,
                        "error",
                        invocation_id=inv.id_str,
                        code=409,
                        message="the workflow method was already invoked",
                    )
                )
            else:
                self._reply_outcome(cmd.token, inv, with_expiry=True)
            return
        self._waiters.setdefault(inv.id.raw, []).append(cmd.token)

    def _expired(self, inv: Invocation) -> bool:
        return (
            inv.status == COMPLETED
            and inv.completed_at_ms is not None
            and inv.completed_at_ms + inv.completion_retention_ms <= self._now
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
        inv.status = INVOKED
        self._touch(inv)
        self._start_attempt(inv)

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
            nxt.status = INVOKED
            self._touch(nxt)
            self._start_attempt(nxt)
            return
        self._inbox.pop(lk, None)
        del self._locks[lk]
        self._batch.op(Op.LOCK_DELETE, t.service, t.key)

    # ------------------------------------------------------------------ attempts

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
                inactivity_timeout_ms=svc.inactivity_timeout_ms,
                abort_timeout_ms=svc.abort_timeout_ms,
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
        policy: ServiceView | None = svc
        max_attempts = policy.retry_max_attempts if policy else 70
        if inv.retry_count >= max_attempts:
            if policy is not None and policy.retry_on_max_attempts == "KILL":
                self._complete(inv, Outcome(failure=Failure(cmd.code, cmd.message)))
            else:
                inv.status = PAUSED
                self._touch(inv)
            return
        if cmd.next_retry_delay_ms is not None:
            delay = cmd.next_retry_delay_ms
        else:
            initial = policy.retry_initial_interval_ms if policy else 500
            factor = policy.retry_exponentiation_factor if policy else 2.0
            cap = policy.retry_max_interval_ms if policy else 60_000
            delay = int(min(cap, initial * factor ** max(0, inv.retry_count - 1)))
        inv.next_retry_at_ms = self._now + delay
        self._touch(inv)
        self._add_timer(Timer(inv.next_retry_at_ms, inv.id.raw, TIMER_RETRY, inv.retry_count))

    # ------------------------------------------------------------------ timers

    def _add_timer(self, timer: Timer) -> None:
        self._batch.timers_add.append(timer)
        self._effects.append(ArmTimer(timer))

    def _on_timer(self, timer: Timer) -> None:
        self._batch.timers_delete.append(timer)
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

    # ------------------------------------------------------------------ notifications

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
        if idx == SIGNAL_CANCEL and target.status in (INBOXED, SCHEDULED):
            self._complete(target, Outcome(failure=CANCELLED))
            return
        n = pb.NotificationMessage(signal_id=idx, **result)
        self._notify(target, T.SIGNAL, n)

    # ------------------------------------------------------------------ messages from the service

    def _on_sdk_message(self, m: SdkMessage) -> None:
        inv = self._resident.get(m.invocation)
        if inv is None or inv.attempt != m.attempt or not inv.attempt_live:
            return  # a stale attempt: fenced off
        try:
            msg = decode(m.type, m.body) if m.type < 0xFC00 else None
            if is_command(m.type) or m.type >= 0xFC00:
                self._on_command(inv, m.type, m.body, msg)
            elif m.type == T.PROPOSE_RUN_COMPLETION:
                self._on_propose_run(inv, msg)
            elif m.type == T.SUSPENSION:
                self._on_suspension(inv, msg)
            elif m.type == T.ERROR:
                self._attempt_failed(inv, _failed_from_error(inv, msg))
            elif m.type == T.END:
                self._on_end(inv)
            else:
                raise ProtocolError(f"unexpected message type 0x{m.type:04x} from the service")
        except ProtocolError as exc:
            self._effects.append(AbortAttempt(inv.id.raw, inv.attempt))
            self._attempt_failed(inv, AttemptFailed(inv.id.raw, inv.attempt, exc.code, str(exc)))

    def _on_command(self, inv: Invocation, msg_type: int, body: bytes, msg: Any) -> None:
        if msg_type == T.INPUT:
            raise ProtocolError("the service sent an InputCommand")
        self._append(inv, msg_type, body)
        handler = _COMMAND_HANDLERS.get(msg_type)
        if handler is not None:
            handler(self, inv, msg)

    def _on_propose_run(self, inv: Invocation, msg: Any) -> None:
        cid = msg.result_completion_id
        if msg.WhichOneof("result") == "failure":
            n = pb.NotificationMessage(completion_id=cid, failure=msg.failure)
        else:
            n = pb.NotificationMessage(completion_id=cid, value=pb.Value(content=msg.value))
        self._notify(inv, T.RUN_COMPLETION, n)

    def _on_suspension(self, inv: Invocation, msg: Any) -> None:
        inv.attempt_live = False
        inv.waiting_completions = list(msg.waiting_completions)
        inv.waiting_signals = list(msg.waiting_signals)
        if not inv.waiting_completions and not inv.waiting_signals and not msg.waiting_named_signals:
            raise ProtocolError("suspension waits for nothing")
        if self._wakes(inv):
            inv.waiting_completions = []
            inv.waiting_signals = []
            self._start_attempt(inv)
            return
        inv.status = SUSPENDED
        self._touch(inv)

    def _on_end(self, inv: Invocation) -> None:
        inv.attempt_live = False
        for e in reversed(inv.journal):
            if e.type == T.OUTPUT:
                out = decode(T.OUTPUT, e.body)
                if out.WhichOneof("result") == "failure":
                    outcome = Outcome(failure=Failure(out.failure.code, out.failure.message))
                else:
                    outcome = Outcome(value=out.value.content)
                self._complete(inv, outcome)
                return
        raise ProtocolError("the service ended the invocation without an output")

    # command side effects -----------------------------------------------------------

    def _cmd_get_lazy_state(self, inv: Invocation, msg: Any) -> None:
        value = self._state_of(inv.target).get(msg.key)
        if value is None:
            n = pb.NotificationMessage(completion_id=msg.result_completion_id, void=pb.Void())
        else:
            n = pb.NotificationMessage(completion_id=msg.result_completion_id, value=pb.Value(content=value))
        self._notify(inv, T.GET_LAZY_STATE_COMPLETION, n)

    def _cmd_get_lazy_state_keys(self, inv: Invocation, msg: Any) -> None:
        keys = sorted(self._state_of(inv.target))
        n = pb.NotificationMessage(completion_id=msg.result_completion_id, state_keys=pb.StateKeys(keys=keys))
        self._notify(inv, T.GET_LAZY_STATE_KEYS_COMPLETION, n)

    def _state_of(self, t: Target) -> dict[bytes, bytes]:
        if t.key is None:
            return {}
        sk = (t.service, t.key)
        st = self._state.get(sk)
        if st is None:
            st = self._reader.get_state(t.service, t.key)
            self._state[sk] = st
        return st

    def _cmd_set_state(self, inv: Invocation, msg: Any) -> None:
        t = inv.target
        if t.key is None:
            raise ProtocolError("state is only available to virtual objects and workflows")
        self._state_of(t)[msg.key] = msg.value.content
        self._batch.op(Op.STATE_SET, t.service, t.key, msg.key, msg.value.content)

    def _cmd_clear_state(self, inv: Invocation, msg: Any) -> None:
        t = inv.target
        if t.key is None:
            raise ProtocolError("state is only available to virtual objects and workflows")
        self._state_of(t).pop(msg.key, None)
        self._batch.op(Op.STATE_DELETE, t.service, t.key, msg.key)

    def _cmd_clear_all_state(self, inv: Invocation, msg: Any) -> None:
        t = inv.target
        if t.key is None:
            raise ProtocolError("state is only available to virtual objects and workflows")
        self._state_of(t).clear()
        self._batch.op(Op.STATE_CLEAR, t.service, t.key)

    def _cmd_sleep(self, inv: Invocation, msg: Any) -> None:
        wake_ms = min(msg.wake_up_time, TIME_MS_MAX)
        self._add_timer(Timer(wake_ms, inv.id.raw, TIMER_SLEEP, msg.result_completion_id))

    def _cmd_call(self, inv: Invocation, msg: Any) -> None:
        caller = CallerRef(inv.id_str, msg.result_completion_id)
        self._call(inv, msg, caller, execution_time_ms=None)

    def _cmd_one_way_call(self, inv: Invocation, msg: Any) -> None:
        self._call(inv, msg, None, execution_time_ms=min(msg.invoke_time, TIME_MS_MAX) or None)

    def _call(
        self, inv: Invocation, msg: Any, caller: CallerRef | None, execution_time_ms: int | None
    ) -> None:
        svc = self._schema.service(msg.service_name)
        handler = svc.handlers.get(msg.handler_name) if svc else None
        if svc is None or handler is None:
            what = f"service '{msg.service_name}'" if svc is None else f"handler '{msg.handler_name}'"
            if caller is not None:
                f = pb.Failure(code=404, message=f"{what} not found")
                self._notify(
                    inv,
                    T.CALL_COMPLETION,
                    pb.NotificationMessage(completion_id=caller.completion_id, failure=f),
                )
            return
        keyed = svc.ty != "SERVICE"
        target = Target(
            msg.service_name,
            msg.handler_name,
            msg.key if keyed else None,
            SERVICE_TY[svc.ty],
            handler_kind(svc, handler),
        )
        ikey = msg.idempotency_key if msg.HasField("idempotency_key") else None
        iid = invocation_id_for(target, ikey)
        n = pb.NotificationMessage(completion_id=msg.invocation_id_notification_idx, invocation_id=str(iid))
        existing = self._get(iid.raw)
        if existing is not None and self._expired(existing):
            self._purge(existing)
            existing = None
        if existing is not None:
            self._notify(inv, T.CALL_INVOCATION_ID_COMPLETION, n)
            if caller is not None:
                self._attach_caller(existing, caller)
            return
        req = InvokeRequest(
            target=target,
            input=msg.parameter,
            headers=tuple((h.key, h.value) for h in msg.headers),
            idempotency_key=ikey,
            execution_time_ms=execution_time_ms,
            idempotency_retention_ms=svc.idempotency_retention_ms,
            workflow_retention_ms=svc.idempotency_retention_ms,
            journal_retention_ms=svc.journal_retention_ms,
        )
        self._create(
            iid, req, invoked_by="service", caller=caller, by_id=inv.id_str, by_target=str(inv.target)
        )
        self._notify(inv, T.CALL_INVOCATION_ID_COMPLETION, n)

    def _attach_caller(self, target: Invocation, ref: CallerRef) -> None:
        if target.status == COMPLETED and target.outcome is not None:
            self._deliver_outcome(ref, target.outcome)
            return
        target.attached.append(ref)
        self._touch(target)

    def _deliver_outcome(self, ref: CallerRef, outcome: Outcome) -> None:
        try:
            raw = InvocationId.parse(ref.invocation_id).raw
        except IdError:
            return
        caller = self._get(raw)
        if caller is None:
            return
        self._notify(caller, ref.notification_type, _result_notification(ref.completion_id, outcome))

    def _cmd_send_signal(self, inv: Invocation, msg: Any) -> None:
        try:
            raw = InvocationId.parse(msg.target_invocation_id).raw
        except IdError as exc:
            raise ProtocolError(f"bad target invocation id: {exc}") from None
        if msg.WhichOneof("signal_id") != "idx":
            return  # named signals are a V7 feature
        self._signal(raw, msg.idx, _signal_result(msg))

    def _cmd_complete_awakeable(self, inv: Invocation, msg: Any) -> None:
        from perdure.protocol.ids import parse_awakeable_id

        try:
            ref = parse_awakeable_id(msg.awakeable_id)
        except (IdError, ProtocolError):
            return
        result: dict[str, Any]
        result = {"failure": msg.failure} if msg.WhichOneof("result") == "failure" else {"value": msg.value}
        self._signal(ref.invocation.raw, ref.index, result)

    def _cmd_attach(self, inv: Invocation, msg: Any, wait: bool = True) -> None:
        raw = _target_of_lookup(msg)
        msg_type = T.ATTACH_INVOCATION_COMPLETION if wait else T.GET_INVOCATION_OUTPUT_COMPLETION
        target = self._get(raw) if raw is not None else None
        cid = msg.result_completion_id
        if target is None:
            f = pb.Failure(code=404, message="invocation not found")
            self._notify(inv, msg_type, pb.NotificationMessage(completion_id=cid, failure=f))
        elif target.status == COMPLETED and target.outcome is not None:
            self._notify(inv, msg_type, _result_notification(cid, target.outcome))
        elif not wait:
            self._notify(inv, msg_type, pb.NotificationMessage(completion_id=cid, void=pb.Void()))
        else:
            target.attached.append(CallerRef(inv.id_str, cid, T.ATTACH_INVOCATION_COMPLETION))
            self._touch(target)

    def _cmd_get_output(self, inv: Invocation, msg: Any) -> None:
        self._cmd_attach(inv, msg, wait=False)

    def _cmd_get_promise(self, inv: Invocation, msg: Any) -> None:
        self._promise_op(inv, msg, T.GET_PROMISE_COMPLETION)

    def _cmd_peek_promise(self, inv: Invocation, msg: Any) -> None:
        self._promise_op(inv, msg, T.PEEK_PROMISE_COMPLETION)

    def _cmd_complete_promise(self, inv: Invocation, msg: Any) -> None:
        self._promise_op(inv, msg, T.COMPLETE_PROMISE_COMPLETION)

    def _promise_op(self, inv: Invocation, msg: Any, msg_type: int) -> None:
        t = inv.target
        if t.service_ty != "workflow" or t.key is None:
            raise ProtocolError("promises are only available to workflows")
        cid = msg.result_completion_id
        p = self._promises.get(t.service, t.key, msg.key)
        if msg_type == T.GET_PROMISE_COMPLETION:
            if p.outcome is not None:
                self._notify(inv, msg_type, _result_notification(cid, p.outcome))
            else:
                p.waiters.append(CallerRef(inv.id_str, cid, T.GET_PROMISE_COMPLETION))
                self._batch.op(Op.PROMISE_PUT, *self._promises.record(t.service, t.key, msg.key))
        elif msg_type == T.PEEK_PROMISE_COMPLETION:
            if p.outcome is not None:
                self._notify(inv, msg_type, _result_notification(cid, p.outcome))
            else:
                self._notify(inv, msg_type, pb.NotificationMessage(completion_id=cid, void=pb.Void()))
        else:
            if p.outcome is not None:
                f = pb.Failure(code=409, message="promise was already completed")
                self._notify(inv, msg_type, pb.NotificationMessage(completion_id=cid, failure=f))
                return
            which = msg.WhichOneof("completion")
            if which == "completion_failure":
                fl = msg.completion_failure
                p.outcome = Outcome(failure=Failure(fl.code, fl.message))
            else:
                p.outcome = Outcome(value=msg.completion_value.content)
            waiters, p.waiters = p.waiters, []
            self._batch.op(Op.PROMISE_PUT, *self._promises.record(t.service, t.key, msg.key))
            self._notify(inv, msg_type, pb.NotificationMessage(completion_id=cid, void=pb.Void()))
            for w in waiters:
                self._deliver_outcome(w, p.outcome)

    # ------------------------------------------------------------------ completion

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
        for token in self._waiters.pop(raw, []):
            self._reply_outcome(token, inv, with_expiry=False)
        if inv.caller is not None:
            self._deliver_outcome(inv.caller, outcome)
        for ref in inv.attached:
            self._deliver_outcome(ref, outcome)
        inv.attached = []
        if was == INBOXED:
            self._drop_from_inbox(inv)
        elif was != SCHEDULED:
            self._release_lock(inv)
        if inv.completion_retention_ms <= 0:
            self._purge(inv)

    def _drop_timers(self, inv: Invocation) -> None:
        """A completed invocation leaves no timers behind (a killed sleeper, a pending retry)."""
        if inv.next_retry_at_ms is not None:
            self._batch.timers_delete.append(
                Timer(inv.next_retry_at_ms, inv.id.raw, TIMER_RETRY, inv.retry_count)
            )
        if inv.status == SCHEDULED and inv.execution_time_ms is not None:
            self._batch.timers_delete.append(Timer(inv.execution_time_ms, inv.id.raw, TIMER_DELAYED_INVOKE))
        for e in inv.journal:
            if e.type == T.SLEEP:
                sleep = decode(e.type, e.body)
                if sleep.result_completion_id not in inv.completed_ids:
                    timer = Timer(
                        min(sleep.wake_up_time, TIME_MS_MAX),
                        inv.id.raw,
                        TIMER_SLEEP,
                        sleep.result_completion_id,
                    )
                    self._batch.timers_delete.append(timer)

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

    def _reply_outcome(self, token: int, inv: Invocation, *, with_expiry: bool) -> None:
        expires = None
        if with_expiry and inv.completed_at_ms is not None:
            expires = inv.completed_at_ms + inv.completion_retention_ms
        self._effects.append(
            Reply(token, "outcome", invocation_id=inv.id_str, outcome=inv.outcome, expires_at_ms=expires)
        )

    # ------------------------------------------------------------------ attach, awakeables, admin

    def _on_attach(self, cmd: Attach) -> None:
        inv = self._get(cmd.raw_id)
        if inv is None or self._expired(inv):
            # Restate words these two differently: attach "not found" (invocation),
            # output "invocation not found" (ingress).
            if cmd.wait:
                self._effects.append(Reply(cmd.token, "error", code=404, message="not found"))
            else:
                msg = "invocation not found"
                self._effects.append(Reply(cmd.token, "error", code=404, message=msg, source="ingress"))
        elif inv.status == COMPLETED:
            self._reply_outcome(cmd.token, inv, with_expiry=True)
        elif not cmd.wait:
            self._effects.append(
                Reply(
                    cmd.token,
                    "error",
                    invocation_id=inv.id_str,
                    code=470,
                    message="the invocation exists but has not completed yet",
                    source="ingress",
                )
            )
        else:
            self._waiters.setdefault(inv.id.raw, []).append(cmd.token)

    def _on_complete_awakeable(self, cmd: CompleteAwakeable) -> None:
        if cmd.failure is not None:
            result: dict[str, Any] = {
                "failure": pb.Failure(code=cmd.failure.code, message=cmd.failure.message)
            }
        else:
            result = {"value": pb.Value(content=cmd.value or b"")}
        self._signal(cmd.awakeable.invocation.raw, cmd.awakeable.index, result)
        self._effects.append(Reply(cmd.token, "ok", code=202))

    def _on_terminate(self, cmd: Terminate) -> None:
        inv = self._get(cmd.raw_id)
        if inv is None:
            text = InvocationId.from_raw(cmd.raw_id)
            self._answer(cmd.token, 404, f"The requested invocation '{text}' does not exist")
            return
        if cmd.mode == "expire":  # the retention sweeper: no one waits for an answer
            if self._expired(inv):
                self._purge(inv)
            return
        if cmd.mode == "purge":
            if inv.status != COMPLETED:
                self._answer(cmd.token, 409, f"The invocation '{inv.id_str}' is not yet completed.")
                return
            self._purge(inv)
            self._answer(cmd.token, 200)
            return
        if inv.status == COMPLETED:
            verb = "is completed, cannot be resumed" if cmd.mode == "resume" else "was already completed"
            self._answer(cmd.token, 409, f"The invocation '{inv.id_str}' {verb}.")
            return
        if cmd.mode == "kill":
            self._kill_tree(inv)
            self._answer(cmd.token, 200)
        elif cmd.mode == "cancel":
            self._signal(inv.id.raw, SIGNAL_CANCEL, {"void": pb.Void()})
            self._answer(cmd.token, 202)
        elif cmd.mode == "pause":
            self._pause(inv, cmd.token)
        elif cmd.mode == "resume":
            self._resume(inv, cmd.token)
        else:
            self._answer(cmd.token, 400, f"unknown mode '{cmd.mode}'")

    def _on_replace_state(self, cmd: ReplaceState) -> None:
        # Applied at once, as an admin override; a handler running on the key keeps
        # the view it started with and its later writes go on top of this state.
        self._state[(cmd.service, cmd.key)] = dict(cmd.state)
        self._batch.op(Op.STATE_CLEAR, cmd.service, cmd.key)
        for k, v in cmd.state:
            self._batch.op(Op.STATE_SET, cmd.service, cmd.key, k, v)
        self._answer(cmd.token, 202)

    def _kill_tree(self, inv: Invocation) -> None:
        """Kill the invocation and, as Restate does, the calls it still waits on."""
        children = _pending_callees(inv)
        self._complete(inv, Outcome(failure=KILLED))
        for text in children:
            try:
                child = self._get(InvocationId.parse(text).raw)
            except IdError:
                continue
            if child is not None and child.status != COMPLETED:
                self._kill_tree(child)

    def _answer(self, token: int, code: int, message: str = "") -> None:
        kind = "ok" if code < 300 else "error"
        self._effects.append(Reply(token, kind, code=code, message=message))

    def _pause(self, inv: Invocation, token: int) -> None:
        if inv.status == PAUSED:
            self._answer(token, 200)
            return
        if inv.status != INVOKED:
            self._answer(token, 409, f"The invocation '{inv.id_str}' is not running, cannot be paused.")
            return
        if inv.attempt_live:
            self._effects.append(AbortAttempt(inv.id.raw, inv.attempt))
            inv.attempt_live = False
        inv.status = PAUSED
        inv.next_retry_at_ms = None
        self._touch(inv)
        self._answer(token, 202)

    def _resume(self, inv: Invocation, token: int) -> None:
        if inv.status != PAUSED:
            self._answer(token, 409, f"The invocation '{inv.id_str}' is not paused.")
            return
        inv.status = INVOKED
        inv.retry_count = 0  # the retry policy starts afresh
        self._start_attempt(inv)
        self._answer(token, 200)


def _pending_callees(inv: Invocation) -> list[str]:
    """Ids of the invocations this one called and whose result it has not got yet."""
    id_notifications: dict[int, str] = {}
    calls: list[tuple[int, int]] = []  # (id notification idx, result completion id)
    for e in inv.journal:
        if e.type == T.CALL:
            c = decode(e.type, e.body)
            calls.append((c.invocation_id_notification_idx, c.result_completion_id))
        elif e.type == T.CALL_INVOCATION_ID_COMPLETION:
            n = decode(e.type, e.body)
            id_notifications[n.completion_id] = n.invocation_id
    return [
        id_notifications[idx]
        for idx, result in calls
        if result not in inv.completed_ids and idx in id_notifications
    ]


def _lazy_state(svc: ServiceView, handler: str) -> bool:
    h = svc.handlers.get(handler)
    override = getattr(h, "enable_lazy_state", None)
    if override is not None:
        return bool(override)
    return bool(getattr(svc, "enable_lazy_state", False))


def _failed_from_error(inv: Invocation, msg: Any) -> AttemptFailed:
    return AttemptFailed(
        inv.id.raw,
        inv.attempt,
        msg.code,
        msg.message,
        msg.stacktrace,
        msg.related_command_index if msg.HasField("related_command_index") else None,
        msg.related_command_name if msg.HasField("related_command_name") else None,
        msg.related_command_type if msg.HasField("related_command_type") else None,
        msg.next_retry_delay if msg.HasField("next_retry_delay") else None,
    )


def _result_notification(cid: int, outcome: Outcome) -> Any:
    if outcome.failure is not None:
        f = pb.Failure(code=outcome.failure.code, message=outcome.failure.message)
        return pb.NotificationMessage(completion_id=cid, failure=f)
    return pb.NotificationMessage(completion_id=cid, value=pb.Value(content=outcome.value or b""))


def _signal_result(msg: Any) -> dict[str, Any]:
    which = msg.WhichOneof("result")
    if which == "value":
        return {"value": msg.value}
    if which == "failure":
        return {"failure": msg.failure}
    return {"void": pb.Void()}


def _target_of_lookup(msg: Any) -> bytes | None:
    which = msg.WhichOneof("target")
    try:
        if which == "invocation_id":
            return InvocationId.parse(msg.invocation_id).raw
        if which == "idempotent_request_target":
            t = msg.idempotent_request_target
            key = t.service_key if t.HasField("service_key") else None
            return idempotent_id(t.service_name, key, t.handler_name, t.idempotency_key).raw
        if which == "workflow_target":
            t = msg.workflow_target
            return workflow_id(t.workflow_name, t.workflow_key).raw
    except IdError:
        return None
    return None


_COMMAND_HANDLERS: dict[int, Callable[[Processor, Invocation, Any], None]] = {
    T.GET_LAZY_STATE: Processor._cmd_get_lazy_state,
    T.GET_LAZY_STATE_KEYS: Processor._cmd_get_lazy_state_keys,
    T.SET_STATE: Processor._cmd_set_state,
    T.CLEAR_STATE: Processor._cmd_clear_state,
    T.CLEAR_ALL_STATE: Processor._cmd_clear_all_state,
    T.SLEEP: Processor._cmd_sleep,
    T.CALL: Processor._cmd_call,
    T.ONE_WAY_CALL: Processor._cmd_one_way_call,
    T.SEND_SIGNAL: Processor._cmd_send_signal,
    T.COMPLETE_AWAKEABLE: Processor._cmd_complete_awakeable,
    T.ATTACH_INVOCATION: Processor._cmd_attach,
    T.GET_INVOCATION_OUTPUT: Processor._cmd_get_output,
    T.GET_PROMISE: Processor._cmd_get_promise,
    T.PEEK_PROMISE: Processor._cmd_peek_promise,
    T.COMPLETE_PROMISE: Processor._cmd_complete_promise,
}
