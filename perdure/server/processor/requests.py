"""Requests from outside the journal: ingress invocations, attach and
output, awakeables completed over HTTP, and the admin operations (cancel,
kill, purge, pause, resume, state edit)."""

from __future__ import annotations

from typing import Any

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.protocol.ids import SIGNAL_CANCEL, IdError, InvocationId
from perdure.server.processor.batch import Op
from perdure.server.processor.commands import (
    TIMER_RETRY,
    Attach,
    ChangeRules,
    CompleteAwakeable,
    Ingest,
    Invoke,
    ReplaceState,
    Terminate,
    Timer,
)
from perdure.server.processor.core import KILLED
from perdure.server.processor.effects import (
    AbortAttempt,
    Reply,
)
from perdure.server.processor.identity import invocation_id_for
from perdure.server.processor.limits import RuleError
from perdure.server.processor.mail import MailKill
from perdure.server.processor.model import (
    COMPLETED,
    INBOXED,
    INVOKED,
    PAUSED,
    READY,
    SCHEDULED,
    SUSPENDED,
    Invocation,
    Outcome,
)
from perdure.server.processor.partitions import PARTITION_MOVED, Partitions


class Requests(Partitions):
    def _on_invoke(self, cmd: Invoke) -> None:
        req = cmd.request
        iid = invocation_id_for(req.target, req.idempotency_key, self._loc.random_pk)
        if self._foreign(iid.raw, cmd.token):
            return
        # Only a workflow run or an idempotent request has a deterministic id: a fresh random one
        # cannot be in the store (on PostgreSQL the read would be a round trip per invocation).
        deterministic = req.idempotency_key is not None or (
            req.target.handler_ty == "workflow" and req.target.key is not None
        )
        existing = self._get(iid.raw) if deterministic else None
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

    def _on_ingest(self, cmd: Ingest) -> None:
        """A Kafka record: dropped if its offset is at or below the stream's high-water mark, else
        one invocation, with the new mark written in the same batch (so a redelivery after a crash,
        before or after this commit, neither loses nor doubles the record)."""
        if self._foreign(invocation_id_for(cmd.request.target, None, self._loc.random_pk).raw, cmd.token):
            return
        mark = self._dedup.get(cmd.producer)
        if mark is None:
            mark = self._reader.get_dedup(cmd.producer)
        if mark is not None and cmd.offset <= mark:
            self._effects.append(Reply(cmd.token, "accepted", status="PreviouslyAccepted"))
            return
        self._dedup[cmd.producer] = cmd.offset
        self._batch.op(Op.DEDUP_SET, cmd.producer, cmd.offset)
        req = cmd.request
        iid = invocation_id_for(req.target, None, self._loc.random_pk)
        # Only a workflow run has a deterministic id: a key that already ran gets nothing more.
        existing = self._get(iid.raw) if req.target.handler_ty == "workflow" else None
        if existing is not None and self._expired(existing):
            self._purge(existing)
            existing = None
        if existing is not None:
            self._effects.append(
                Reply(cmd.token, "accepted", invocation_id=existing.id_str, status="PreviouslyAccepted")
            )
            return
        self._create(
            iid, req, invoked_by="subscription", caller=None, by_id=cmd.subscription_id, by_target=None
        )
        self._effects.append(Reply(cmd.token, "accepted", invocation_id=str(iid), status="Accepted"))

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

    def _on_attach(self, cmd: Attach) -> None:
        if self._foreign(cmd.raw_id, cmd.token):
            return
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
        if self._foreign(cmd.awakeable.invocation.raw, cmd.token):
            return
        if cmd.failure is not None:
            result: dict[str, Any] = {
                "failure": pb.Failure(code=cmd.failure.code, message=cmd.failure.message)
            }
        else:
            result = {"value": pb.Value(content=cmd.value or b"")}
        self._signal(cmd.awakeable.invocation.raw, cmd.awakeable.index, result)
        self._effects.append(Reply(cmd.token, "ok", code=202))

    def _on_terminate(self, cmd: Terminate) -> None:
        if self._foreign(cmd.raw_id, cmd.token):
            return
        inv = self._get(cmd.raw_id)
        if inv is None:
            text = InvocationId.from_raw(cmd.raw_id)
            self._answer(cmd.token, 404, f"The requested invocation '{text}' does not exist")
            return
        if cmd.mode == "expire":  # the retention sweeper: no one waits for an answer
            if self._expired(inv):
                self._purge(inv)
            elif self._journal_expired(inv):
                self._purge_journal(inv)
            if cmd.token:  # the sweeper waits for the last of a batch
                self._answer(cmd.token, 200)
            return
        if cmd.mode == "purge_journal":
            if inv.status != COMPLETED:
                self._answer(cmd.token, 409, f"The invocation '{inv.id_str}' is not yet completed.")
                return
            self._purge_journal(inv)
            self._answer(cmd.token, 200)
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
        if not self._loc.owns_key(cmd.key):
            self._answer(cmd.token, 503, PARTITION_MOVED)
            return
        self._state[(cmd.service, cmd.key)] = dict(cmd.state)
        self._batch.op(Op.STATE_CLEAR, cmd.service, cmd.key)
        for k, v in cmd.state:
            self._batch.op(Op.STATE_SET, cmd.service, cmd.key, k, v)
        self._answer(cmd.token, 202)

    def _on_change_rules(self, cmd: ChangeRules) -> None:
        try:
            written = self._limits.change(list(cmd.changes), self._now, self._batch)
        except RuleError as e:
            self._answer(cmd.token, e.status, e.message)
            return
        self._effects.append(Reply(cmd.token, "ok", code=200, data=written))
        self._pump()  # a loosened or removed rule lets waiting invocations go

    def _kill_tree(self, inv: Invocation) -> None:
        """Kill the invocation and, as Restate does, the calls it still waits on."""
        children = _pending_callees(inv)
        self._complete(inv, Outcome(failure=KILLED))
        for text in children:
            try:
                raw = InvocationId.parse(text).raw
            except IdError:
                continue
            if not self._loc.owns_id(raw):
                self._post(raw, MailKill(raw))  # another cluster node's partition
                continue
            child = self._get(raw)
            if child is not None and child.status != COMPLETED:
                self._kill_tree(child)

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
        """Paused or suspended: run again now. Backing off: retry now. Running: nothing to do."""
        if inv.status in (INBOXED, SCHEDULED, READY):
            self._answer(
                token,
                425,
                f"The invocation '{inv.id_str}' is either inboxed or scheduled, cannot be resumed.",
            )
            return
        if inv.status == PAUSED:
            inv.retry_count = 0  # the retry policy starts afresh
        elif inv.status == SUSPENDED:
            inv.waiting_completions = []
            inv.waiting_signals = []
        elif inv.attempt_live:
            self._answer(token, 200)
            return
        elif inv.next_retry_at_ms is not None:
            self._batch.timers_delete.append(
                Timer(inv.next_retry_at_ms, inv.id.raw, TIMER_RETRY, inv.retry_count)
            )
        inv.status = INVOKED
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
