"""A simulated SDK endpoint: runs one attempt of a handler program the way a
protocol V6 SDK does.

It replays the journal it was started with (commands matched by order,
notifications by completion id), then emits new commands, proposes run
results, waits for the notifications the processor releases, suspends when
asked to, and finishes with an OutputCommand and End. Cancellation (signal 1)
fails the first await for which the signal comes, in journal order, before the
awaited result: a rule that depends only on the journal, so a replay decides
the same way as the original attempt."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode, is_command
from perdure.protocol.ids import SIGNAL_CANCEL
from perdure.server.processor.effects import StartAttempt
from perdure.server.processor.model import Failure
from perdure.testing.simulation import programs as pg

CANCELLED = Failure(409, "cancelled")
RunHook = Callable[[bytes, int, int], None]  # (invocation, completion id, attempt)


class JournalMismatch(Exception):
    """Replay met a journaled command other than the one the program issues."""


class _Wait:
    """Marker: the awaited result has not arrived."""


WAIT = _Wait()


class SimAttempt:
    """One attempt: `inbound` holds released notifications, `outbound` the
    messages the SDK streamed that the network has not delivered yet."""

    def __init__(self, start: StartAttempt, on_run: RunHook) -> None:
        self.start = start
        self.raw = start.invocation
        self.attempt = start.attempt
        self.outbound: deque[tuple[int, bytes]] = deque()
        self.inbound: deque[tuple[int, bytes]] = deque()
        self.ended = False
        self._on_run = on_run
        self._state = dict(start.state)
        self._partial = start.partial_state
        self._replay: list[tuple[int, bytes]] = [
            (e.type, e.body) for e in start.journal if is_command(e.type)
        ]
        if not self._replay or self._replay[0][0] != T.INPUT:
            raise JournalMismatch("journal does not start with an InputCommand")
        self.input: bytes = decode(T.INPUT, self._replay[0][1]).value.content
        self._notifications: dict[int, tuple[int, Any]] = {}
        self._cancel_seq: int | None = None
        self._seq = 0
        for e in start.journal:
            if not is_command(e.type):
                self._note(e.type, e.body)
        self._command_index = 1
        self._next_cid = 1
        self._program = pg.PROGRAMS[(start.target.service, start.target.handler)](self.input)
        self._awaiting: int | None = None
        self._started = False
        self._now_ms = 0

    # ------------------------------------------------------------------ driving

    @property
    def waiting(self) -> bool:
        return self._awaiting is not None

    def runnable(self) -> bool:
        """Whether a step can make progress (or decide to suspend)."""
        return not self.ended and (not self._started or bool(self.inbound) or self.waiting)

    def step(self, now_ms: int) -> None:
        """Take in released notifications and run the program until it waits or ends."""
        self._now_ms = now_ms
        while self.inbound:
            self._note(*self.inbound.popleft())
        if self.ended or (self._started and self._awaiting is None):
            return
        self._started = True
        result: pg.Result = None
        while True:
            if self._awaiting is not None:
                r = self._resolve(self._awaiting)
                if isinstance(r, _Wait):
                    return
                if r is CANCELLED:
                    self._finish(CANCELLED)
                    return
                self._awaiting = None
                result = r
            op = self._send(result)
            if op is None:
                return
            result = self._do(op)

    def suspend(self) -> None:
        assert self._awaiting is not None
        msg = pb.SuspensionMessage(waiting_completions=[self._awaiting], waiting_signals=[SIGNAL_CANCEL])
        self._emit(T.SUSPENSION, msg)
        self.ended = True

    def fail(self, code: int, message: str) -> None:
        """The handler threw a retryable error: ErrorMessage, and the stream ends."""
        self._emit(T.ERROR, pb.ErrorMessage(code=code, message=message))
        self.ended = True

    # ------------------------------------------------------------------ program

    def _send(self, result: pg.Result) -> pg.Op | None:
        try:
            return self._program.send(result)
        except StopIteration as stop:
            self._finish(stop.value)
            return None

    def _finish(self, output: pg.Output) -> None:
        if isinstance(output, Failure):
            msg = pb.OutputCommandMessage(failure=pb.Failure(code=output.code, message=output.message))
        else:
            msg = pb.OutputCommandMessage(value=pb.Value(content=output))
        msg.name = "output"
        self._command(T.OUTPUT, msg)
        self._emit(T.END, pb.EndMessage())
        self.ended = True

    def _do(self, op: pg.Op) -> pg.Result:
        """Issue one operation; returns its immediate result, or `None` with
        `_awaiting` set when the result comes as a notification."""
        name = f"{self._command_index}:{type(op).__name__}"
        if isinstance(op, pg.Run):
            cid = self._cid()
            self._command(T.RUN, pb.RunCommandMessage(result_completion_id=cid, name=name))
            if cid not in self._notifications:
                self._on_run(self.raw, cid, self.attempt)
                value = f"{op.label}@a{self.attempt}".encode()
                self._emit(
                    T.PROPOSE_RUN_COMPLETION,
                    pb.ProposeRunCompletionMessage(result_completion_id=cid, value=value),
                )
            return self._await(cid)
        if isinstance(op, pg.Sleep):
            cid = self._cid()
            wake = self._now_ms + op.duration_ms
            self._command(
                T.SLEEP, pb.SleepCommandMessage(wake_up_time=wake, result_completion_id=cid, name=name)
            )
            return self._await(cid)
        if isinstance(op, pg.GetState):
            return self._get_state(op, name)
        if isinstance(op, pg.SetState):
            msg = pb.SetStateCommandMessage(key=op.key, value=pb.Value(content=op.value), name=name)
            self._command(T.SET_STATE, msg)
            self._state[op.key] = op.value
            return None
        if isinstance(op, pg.ClearState):
            self._command(T.CLEAR_STATE, pb.ClearStateCommandMessage(key=op.key, name=name))
            self._state.pop(op.key, None)
            return None
        if isinstance(op, pg.Call):
            id_cid, cid = self._cid(), self._cid()
            call = pb.CallCommandMessage(
                service_name=op.service,
                handler_name=op.handler,
                parameter=op.parameter,
                key=op.key,
                invocation_id_notification_idx=id_cid,
                result_completion_id=cid,
                name=name,
            )
            self._command(T.CALL, call)
            return self._await(cid)
        if isinstance(op, pg.Send):
            send = pb.OneWayCallCommandMessage(
                service_name=op.service,
                handler_name=op.handler,
                parameter=op.parameter,
                key=op.key,
                invoke_time=self._now_ms + op.delay_ms if op.delay_ms else 0,
                invocation_id_notification_idx=self._cid(),
                name=name,
            )
            self._command(T.ONE_WAY_CALL, send)
            return None
        if isinstance(op, pg.GetPromise):
            cid = self._cid()
            self._command(
                T.GET_PROMISE, pb.GetPromiseCommandMessage(key=op.name, result_completion_id=cid, name=name)
            )
            return self._await(cid)
        cid = self._cid()
        complete = pb.CompletePromiseCommandMessage(
            key=op.name, completion_value=pb.Value(content=op.value), result_completion_id=cid, name=name
        )
        self._command(T.COMPLETE_PROMISE, complete)
        return self._await(cid)

    def _get_state(self, op: pg.GetState, name: str) -> pg.Result:
        if op.lazy or self._partial:
            cid = self._cid()
            self._command(
                T.GET_LAZY_STATE,
                pb.GetLazyStateCommandMessage(key=op.key, result_completion_id=cid, name=name),
            )
            return self._await(cid)
        value = self._state.get(op.key)
        if value is None:
            msg = pb.GetEagerStateCommandMessage(key=op.key, void=pb.Void(), name=name)
        else:
            msg = pb.GetEagerStateCommandMessage(key=op.key, value=pb.Value(content=value), name=name)
        journaled = self._command(T.GET_EAGER_STATE, msg)
        return journaled.value.content if journaled.WhichOneof("result") == "value" else None

    def _await(self, cid: int) -> pg.Result:
        """Await `cid`: the result comes later, through `_resolve`."""
        self._awaiting = cid
        return None

    # ------------------------------------------------------------------ journal

    def _cid(self) -> int:
        cid = self._next_cid
        self._next_cid += 1
        return cid

    def _command(self, msg_type: int, msg: Any) -> Any:
        """Match the next journaled command during replay, or emit a new one."""
        idx = self._command_index
        self._command_index += 1
        if idx < len(self._replay):
            j_type, j_body = self._replay[idx]
            journaled = decode(j_type, j_body)
            if j_type != msg_type or journaled.name != msg.name or _cids(journaled) != _cids(msg):
                raise JournalMismatch(
                    f"command {idx}: journal has 0x{j_type:04x} {journaled.name!r}, "
                    f"program issued 0x{msg_type:04x} {msg.name!r}"
                )
            return journaled
        self._emit(msg_type, msg)
        return msg

    def _emit(self, msg_type: int, msg: Any) -> None:
        self.outbound.append((msg_type, msg.SerializeToString()))

    def _note(self, msg_type: int, body: bytes) -> None:
        n = decode(msg_type, body)
        self._seq += 1
        which = n.WhichOneof("id")
        if which == "completion_id":
            self._notifications.setdefault(n.completion_id, (self._seq, n))
        elif which == "signal_id" and n.signal_id == SIGNAL_CANCEL and self._cancel_seq is None:
            self._cancel_seq = self._seq

    def _resolve(self, cid: int) -> pg.Result | _Wait:
        got = self._notifications.get(cid)
        if got is not None and (self._cancel_seq is None or got[0] < self._cancel_seq):
            return _result(got[1])
        if self._cancel_seq is not None:
            return CANCELLED
        return WAIT


def _cids(msg: Any) -> tuple[int, int]:
    return (getattr(msg, "result_completion_id", 0), getattr(msg, "invocation_id_notification_idx", 0))


def _result(n: Any) -> pg.Result:
    which = n.WhichOneof("result")
    if which == "value":
        content: bytes = n.value.content
        return content
    if which == "failure":
        return Failure(n.failure.code, n.failure.message)
    return None
