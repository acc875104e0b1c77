"""Messages a service streams during an attempt: commands (journaled, then
acted on), run proposals, suspension, errors, the end."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode, is_command
from perdure.protocol.errors import ProtocolError
from perdure.protocol.ids import IdError, InvocationId
from perdure.server.processor.batch import Op
from perdure.server.processor.commands import (
    TIMER_SLEEP,
    AttemptFailed,
    InvokeRequest,
    SdkMessage,
    Timer,
)
from perdure.server.processor.core import ProcessorCore, _result_notification
from perdure.server.processor.effects import (
    AbortAttempt,
)
from perdure.server.processor.identity import idempotent_id, invocation_id_for, workflow_id
from perdure.server.processor.mail import MailAttach, MailInvoke, MailSignal
from perdure.server.processor.model import (
    COMPLETED,
    SUSPENDED,
    TIME_MS_MAX,
    CallerRef,
    Failure,
    Invocation,
    Outcome,
    Target,
)
from perdure.server.processor.schema import SERVICE_TY, handler_kind


class JournalCommands(ProcessorCore):
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
        # A plain callee lives in its caller's partition: wherever that partition moves, the two
        # move together (a result never has to cross nodes).
        here = self._loc.of_id(inv.id.raw)
        iid = invocation_id_for(target, ikey, lambda: self._loc.random_pk_in(here))
        n = pb.NotificationMessage(completion_id=msg.invocation_id_notification_idx, invocation_id=str(iid))
        req = InvokeRequest(
            target=target,
            input=msg.parameter,
            headers=tuple((h.key, h.value) for h in msg.headers),
            idempotency_key=ikey,
            execution_time_ms=execution_time_ms,
            idempotency_retention_ms=svc.idempotency_retention_ms,
            workflow_retention_ms=svc.idempotency_retention_ms,
            journal_retention_ms=svc.journal_retention_ms,
            # A call stays in the caller's trace: the callee's attempt and end spans are children
            # of the caller's start span (the processor does not know the attempt's own span).
            trace_parent=inv.trace_parent if caller is not None else None,
        )
        self._notify(inv, T.CALL_INVOCATION_ID_COMPLETION, n)  # before a known outcome (journal order)
        call = MailInvoke(iid, req, caller, "service", inv.id_str, str(inv.target))
        if not self._loc.owns_id(iid.raw):
            self._post(iid.raw, call)  # another node's partition: through the mailbox
        else:
            self._invoke_here(call)

    def _invoke_here(self, m: MailInvoke) -> None:
        """Create invocation `m.id` in a partition of this node's, or attach `m.caller` to it when it
        exists already (an idempotent call, a workflow run)."""
        existing = self._get(m.id.raw)
        if existing is not None and self._expired(existing):
            self._purge(existing)
            existing = None
        if existing is None:
            by = {"by_id": m.by_id, "by_target": m.by_target}
            self._create(m.id, m.request, invoked_by=m.invoked_by, caller=m.caller, **by)
        elif m.caller is not None:
            self._attach_caller(existing, m.caller)

    def _attach_caller(self, target: Invocation, ref: CallerRef) -> None:
        if target.status == COMPLETED and target.outcome is not None:
            self._deliver_outcome(ref, target.outcome)
            return
        target.attached.append(ref)
        self._touch(target)

    def _cmd_send_signal(self, inv: Invocation, msg: Any) -> None:
        try:
            raw = InvocationId.parse(msg.target_invocation_id).raw
        except IdError as exc:
            raise ProtocolError(f"bad target invocation id: {exc}") from None
        if msg.WhichOneof("signal_id") != "idx":
            return  # named signals are a V7 feature
        self._signal_anywhere(raw, msg.idx, _signal_result(msg))

    def _cmd_complete_awakeable(self, inv: Invocation, msg: Any) -> None:
        from perdure.protocol.ids import parse_awakeable_id

        try:
            ref = parse_awakeable_id(msg.awakeable_id)
        except (IdError, ProtocolError):
            return
        result: dict[str, Any]
        result = {"failure": msg.failure} if msg.WhichOneof("result") == "failure" else {"value": msg.value}
        self._signal_anywhere(ref.invocation.raw, ref.index, result)

    def _signal_anywhere(self, raw: bytes, idx: int, result: dict[str, Any]) -> None:
        if self._loc.owns_id(raw):
            self._signal(raw, idx, result)
            return
        ((kind, body),) = result.items()
        self._post(raw, MailSignal(raw, idx, kind, body.SerializeToString()))

    def _cmd_attach(self, inv: Invocation, msg: Any, wait: bool = True) -> None:
        raw = _target_of_lookup(msg)
        msg_type = T.ATTACH_INVOCATION_COMPLETION if wait else T.GET_INVOCATION_OUTPUT_COMPLETION
        ref = CallerRef(inv.id_str, msg.result_completion_id, msg_type)
        if raw is not None and not self._loc.owns_id(raw):
            self._post(raw, MailAttach(raw, ref, wait))  # another node's partition
        else:
            self._attach_answer(raw, ref, wait)

    def _attach_answer(self, raw: bytes | None, ref: CallerRef, wait: bool) -> None:
        """Answer `ref`'s attach (or get-output, not `wait`) to invocation `raw`, a local one."""
        target = self._get(raw) if raw is not None else None
        cid = ref.completion_id
        if target is None:
            f = pb.Failure(code=404, message="invocation not found")
            self._deliver_note(ref, pb.NotificationMessage(completion_id=cid, failure=f))
        elif target.status == COMPLETED and target.outcome is not None:
            self._deliver_outcome(ref, target.outcome)
        elif not wait:
            self._deliver_note(ref, pb.NotificationMessage(completion_id=cid, void=pb.Void()))
        else:
            target.attached.append(ref)
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


_COMMAND_HANDLERS: dict[int, Callable[[JournalCommands, Invocation, Any], None]] = {
    T.GET_LAZY_STATE: JournalCommands._cmd_get_lazy_state,
    T.GET_LAZY_STATE_KEYS: JournalCommands._cmd_get_lazy_state_keys,
    T.SET_STATE: JournalCommands._cmd_set_state,
    T.CLEAR_STATE: JournalCommands._cmd_clear_state,
    T.CLEAR_ALL_STATE: JournalCommands._cmd_clear_all_state,
    T.SLEEP: JournalCommands._cmd_sleep,
    T.CALL: JournalCommands._cmd_call,
    T.ONE_WAY_CALL: JournalCommands._cmd_one_way_call,
    T.SEND_SIGNAL: JournalCommands._cmd_send_signal,
    T.COMPLETE_AWAKEABLE: JournalCommands._cmd_complete_awakeable,
    T.ATTACH_INVOCATION: JournalCommands._cmd_attach,
    T.GET_INVOCATION_OUTPUT: JournalCommands._cmd_get_output,
    T.GET_PROMISE: JournalCommands._cmd_get_promise,
    T.PEEK_PROMISE: JournalCommands._cmd_peek_promise,
    T.COMPLETE_PROMISE: JournalCommands._cmd_complete_promise,
}
