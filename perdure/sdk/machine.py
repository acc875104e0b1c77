"""The SDK's sans-IO invocation state machine.

Bytes from the server are fed in; every context operation becomes a method that
records a command (or, while replaying, checks it against the journal) and
returns a *handle*; notifications complete handles; the driver asks whether a
handle is ready and, when it is not and the server closed its side, tells the
machine to suspend. Output bytes are taken out by the driver. No sockets, no
clocks, no tasks: everything here is testable by feeding bytes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType, decode, is_command, is_notification
from perdure.protocol.errors import JournalMismatch, ProtocolError
from perdure.protocol.framing import FrameDecoder, encode_frame
from perdure.protocol.ids import SIGNAL_CANCEL, InvocationId, awakeable_id
from perdure.sdk.journal import VOID, Failure, Result, check_replayed

SIGNAL_BASE = 1 << 32  # handle of signal n is SIGNAL_BASE + n
IMMEDIATE_BASE = 1 << 33  # handles of results known at once (eager state)
AWAKEABLE_SIGNAL_FIRST = 17  # signals 1..16 are reserved by the protocol
PROTOCOL_VERSIONS = (5, 6)

_RUN = MessageType.RUN


@dataclass(frozen=True, slots=True)
class Target:
    """Who a call or a send goes to, and with which request headers and idempotency key."""

    service: str
    handler: str
    key: str | None = None
    headers: dict[str, str] | None = None
    idempotency_key: str | None = None

    def address(self, msg: Any) -> None:
        """Fill the target fields of a Call or OneWayCall command."""
        msg.service_name = self.service
        msg.handler_name = self.handler
        msg.key = self.key or ""
        for k, v in (self.headers or {}).items():
            msg.headers.add(key=k, value=v)
        if self.idempotency_key is not None:
            msg.idempotency_key = self.idempotency_key


class MachineClosed(Exception):
    """The invocation already ended (output, suspension or error was sent)."""


class Machine:
    """State of one invocation attempt. Feed it server bytes, call it for each
    context operation, take its output bytes."""

    def __init__(self, protocol_version: int = 6) -> None:
        if protocol_version not in PROTOCOL_VERSIONS:
            raise ProtocolError(f"unsupported protocol version {protocol_version}")
        self.protocol_version = protocol_version
        self._decoder = FrameDecoder()
        self._out: list[bytes] = []
        self._results: dict[int, Result] = {}
        self._replay: deque[tuple[int, Any]] = deque()
        self._known_left = -1  # messages of the known journal still to receive; -1 before Start
        self._next_completion = 1
        self._next_signal = AWAKEABLE_SIGNAL_FIRST
        self._next_immediate = IMMEDIATE_BASE
        self.command_index = 0  # index of the next command (Input is 0)
        self.input_closed = False
        self.closed = False
        self.cancel_received = False
        self.mismatch: JournalMismatch | None = None
        self._mismatch_at = (0, 0)
        self.start: Any = None
        self.input: Any = None
        self.state: dict[str, bytes] = {}
        self.partial_state = True

    # ---- input ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Start and the whole known journal arrived: the handler may run."""
        return self._known_left == 0

    @property
    def replaying(self) -> bool:
        return bool(self._replay)

    def feed(self, data: bytes) -> bool:
        """Consume server bytes; True when a live notification completed something."""
        progressed = False
        for frame in self._decoder.feed(data):
            msg = decode(frame.type, frame.body)
            if self._known_left < 0:
                self._on_start(frame.type, msg)
            elif self._known_left > 0:
                self._known_left -= 1
                self._on_known(frame.type, msg)
            elif is_notification(frame.type):
                self._on_notification(msg)
                progressed = True
            elif frame.type == MessageType.COMMAND_ACK:
                continue
            else:
                raise ProtocolError(f"unexpected message 0x{frame.type:04x} after the known journal")
        return progressed

    def feed_eof(self) -> None:
        if not self.ready:
            raise ProtocolError("the server closed the stream before sending the known journal")
        self.input_closed = True

    def _on_start(self, msg_type: int, msg: Any) -> None:
        if msg_type != MessageType.START:
            raise ProtocolError(f"expected Start, got message 0x{msg_type:04x}")
        if msg.known_entries < 1:
            raise ProtocolError("Start announces an empty journal; the Input command is missing")
        self.start = msg
        self._known_left = msg.known_entries
        self.partial_state = msg.partial_state
        self.state = {e.key.decode(): e.value for e in msg.state_map}

    def _on_known(self, msg_type: int, msg: Any) -> None:
        if self.input is None:
            if msg_type != MessageType.INPUT:
                raise ProtocolError(f"the journal must start with Input, got 0x{msg_type:04x}")
            self.input = msg
            self.command_index = 1
        elif is_notification(msg_type):
            self._on_notification(msg)
        elif is_command(msg_type):
            self._replay.append((msg_type, msg))

    def _on_notification(self, msg: Any) -> None:
        which = msg.WhichOneof("id")
        if which == "completion_id":
            handle = msg.completion_id
        elif which == "signal_id":
            handle = SIGNAL_BASE + msg.signal_id
            if msg.signal_id == SIGNAL_CANCEL:
                self.cancel_received = True
        else:
            return  # named signals are a V7 feature; nothing here awaits them
        result = msg.WhichOneof("result")
        if result == "value":
            self._results[handle] = msg.value.content
        elif result == "failure":
            self._results[handle] = Failure(msg.failure.code, msg.failure.message)
        elif result == "invocation_id":
            self._results[handle] = msg.invocation_id
        elif result == "state_keys":
            self._results[handle] = [k.decode() for k in msg.state_keys.keys]
        else:
            self._results[handle] = VOID

    # ---- handles ------------------------------------------------------------------------------

    def is_completed(self, handle: int) -> bool:
        return handle in self._results

    def result(self, handle: int) -> Result:
        return self._results[handle]

    def _completion(self) -> int:
        cid = self._next_completion
        self._next_completion += 1
        return cid

    def _immediate(self, result: Result) -> int:
        handle = self._next_immediate
        self._next_immediate += 1
        self._results[handle] = result
        return handle

    # ---- commands -----------------------------------------------------------------------------

    def _command(self, msg_type: int, msg: Any) -> tuple[int, Any]:
        """Record a command; while replaying, check it and return the journal's copy."""
        if self.closed:
            raise MachineClosed("the invocation already ended")
        if self.mismatch is not None:
            raise self.mismatch
        index = self.command_index
        self.command_index += 1
        if self._replay:
            recorded_type, recorded = self._replay.popleft()
            try:
                check_replayed(index, recorded_type, recorded, msg_type, msg)
            except JournalMismatch as exc:
                self.mismatch = exc  # kept even if the handler swallows the exception
                self._mismatch_at = (index, recorded_type)
                raise
            return index, recorded
        self._out.append(encode_frame(msg_type, msg.SerializeToString()))
        return index, msg

    def get_state(self, key: str, name: str = "") -> int:
        if key in self.state or not self.partial_state:
            value = self.state.get(key)
            eager = pb.GetEagerStateCommandMessage(key=key.encode(), name=name)
            if value is None:
                eager.void.SetInParent()
            else:
                eager.value.content = value
            _, recorded = self._command(MessageType.GET_EAGER_STATE, eager)
            # while replaying, the journal's copy holds the value read back then
            return self._immediate(recorded.value.content if recorded.HasField("value") else VOID)
        cid = self._completion()
        lazy = pb.GetLazyStateCommandMessage(key=key.encode(), result_completion_id=cid, name=name)
        self._command(MessageType.GET_LAZY_STATE, lazy)
        return cid

    def state_keys(self, name: str = "") -> int:
        if not self.partial_state:
            keys = sorted(self.state)
            eager = pb.GetEagerStateKeysCommandMessage(name=name)
            eager.value.keys.extend(k.encode() for k in keys)
            _, recorded = self._command(MessageType.GET_EAGER_STATE_KEYS, eager)
            return self._immediate([k.decode() for k in recorded.value.keys])
        cid = self._completion()
        self._command(
            MessageType.GET_LAZY_STATE_KEYS,
            pb.GetLazyStateKeysCommandMessage(result_completion_id=cid, name=name),
        )
        return cid

    def set_state(self, key: str, value: bytes, name: str = "") -> None:
        msg = pb.SetStateCommandMessage(key=key.encode(), name=name)
        msg.value.content = value
        self._command(MessageType.SET_STATE, msg)
        self.state[key] = value

    def clear_state(self, key: str, name: str = "") -> None:
        self._command(MessageType.CLEAR_STATE, pb.ClearStateCommandMessage(key=key.encode(), name=name))
        self.state.pop(key, None)

    def clear_all_state(self, name: str = "") -> None:
        self._command(MessageType.CLEAR_ALL_STATE, pb.ClearAllStateCommandMessage(name=name))
        self.state.clear()
        self.partial_state = False  # every key is now known to be absent

    def sleep(self, wake_up_time_ms: int, name: str = "") -> int:
        cid = self._completion()
        msg = pb.SleepCommandMessage(wake_up_time=wake_up_time_ms, result_completion_id=cid, name=name)
        self._command(MessageType.SLEEP, msg)
        return cid

    def run(self, name: str) -> tuple[int, int, bool]:
        """Returns (handle, command index, replayed). The action must execute, and
        its result be proposed, only if the handle is not already completed."""
        cid = self._completion()
        msg = pb.RunCommandMessage(result_completion_id=cid, name=name)
        index, recorded = self._command(_RUN, msg)
        return cid, index, recorded is not msg

    def propose_run(self, handle: int, result: bytes | Failure) -> None:
        if self.closed:
            return
        msg = pb.ProposeRunCompletionMessage(result_completion_id=handle)
        if isinstance(result, Failure):
            msg.failure.code = result.code
            msg.failure.message = result.message
        else:
            msg.value = result
        self._out.append(encode_frame(MessageType.PROPOSE_RUN_COMPLETION, msg.SerializeToString()))

    def call(self, target: Target, parameter: bytes, name: str = "") -> tuple[int, int]:
        """Returns (invocation id handle, result handle)."""
        id_cid = self._completion()
        result_cid = self._completion()
        msg = pb.CallCommandMessage(
            parameter=parameter,
            invocation_id_notification_idx=id_cid,
            result_completion_id=result_cid,
            name=name,
        )
        target.address(msg)
        self._command(MessageType.CALL, msg)
        return id_cid, result_cid

    def send(self, target: Target, parameter: bytes, invoke_time_ms: int = 0, name: str = "") -> int:
        """Returns the invocation id handle; `invoke_time_ms` 0 means now."""
        id_cid = self._completion()
        msg = pb.OneWayCallCommandMessage(
            parameter=parameter, invoke_time=invoke_time_ms, invocation_id_notification_idx=id_cid, name=name
        )
        target.address(msg)
        self._command(MessageType.ONE_WAY_CALL, msg)
        return id_cid

    def awakeable(self) -> tuple[str, int]:
        """A new signal slot of this invocation; no journal entry in V5+."""
        signal = self._next_signal
        self._next_signal += 1
        raw = self.start.id
        return awakeable_id(InvocationId.from_raw(raw), signal), SIGNAL_BASE + signal

    def complete_awakeable(self, awakeable: str, result: bytes | Failure, name: str = "") -> None:
        msg = pb.CompleteAwakeableCommandMessage(awakeable_id=awakeable, name=name)
        if isinstance(result, Failure):
            msg.failure.code = result.code
            msg.failure.message = result.message
        else:
            msg.value.content = result
        self._command(MessageType.COMPLETE_AWAKEABLE, msg)

    def get_promise(self, key: str, name: str = "") -> int:
        cid = self._completion()
        msg = pb.GetPromiseCommandMessage(key=key, result_completion_id=cid, name=name)
        self._command(MessageType.GET_PROMISE, msg)
        return cid

    def peek_promise(self, key: str, name: str = "") -> int:
        cid = self._completion()
        msg = pb.PeekPromiseCommandMessage(key=key, result_completion_id=cid, name=name)
        self._command(MessageType.PEEK_PROMISE, msg)
        return cid

    def complete_promise(self, key: str, result: bytes | Failure, name: str = "") -> int:
        cid = self._completion()
        msg = pb.CompletePromiseCommandMessage(key=key, result_completion_id=cid, name=name)
        if isinstance(result, Failure):
            msg.completion_failure.code = result.code
            msg.completion_failure.message = result.message
        else:
            msg.completion_value.content = result
        self._command(MessageType.COMPLETE_PROMISE, msg)
        return cid

    def cancel_invocation(self, invocation_id: str, name: str = "") -> None:
        msg = pb.SendSignalCommandMessage(
            target_invocation_id=invocation_id, idx=SIGNAL_CANCEL, entry_name=name
        )
        msg.void.SetInParent()
        self._command(MessageType.SEND_SIGNAL, msg)

    def attach_invocation(self, invocation_id: str, name: str = "") -> int:
        cid = self._completion()
        msg = pb.AttachInvocationCommandMessage(
            invocation_id=invocation_id, result_completion_id=cid, name=name
        )
        self._command(MessageType.ATTACH_INVOCATION, msg)
        return cid

    def get_invocation_output(self, invocation_id: str, name: str = "") -> int:
        cid = self._completion()
        msg = pb.GetInvocationOutputCommandMessage(
            invocation_id=invocation_id, result_completion_id=cid, name=name
        )
        self._command(MessageType.GET_INVOCATION_OUTPUT, msg)
        return cid

    # ---- endings ------------------------------------------------------------------------------

    def output(self, result: bytes | Failure) -> None:
        """Record the handler's result and end the invocation."""
        msg = pb.OutputCommandMessage()
        if isinstance(result, Failure):
            msg.failure.code = result.code
            msg.failure.message = result.message
        else:
            msg.value.content = result
        self._command(MessageType.OUTPUT, msg)
        self._end_with(encode_frame(MessageType.END, b""))

    def suspend(self, handles: Iterable[int]) -> None:
        """Tell the server to resume the invocation once one of `handles` (or a
        cancellation) completes."""
        completions: set[int] = set()
        signals = {SIGNAL_CANCEL}
        for h in handles:
            if h >= IMMEDIATE_BASE:
                continue
            if h >= SIGNAL_BASE:
                signals.add(h - SIGNAL_BASE)
            else:
                completions.add(h)
        msg = pb.SuspensionMessage(waiting_completions=sorted(completions), waiting_signals=sorted(signals))
        self._end_with(encode_frame(MessageType.SUSPENSION, msg.SerializeToString()))

    def fail(
        self,
        code: int,
        message: str,
        stacktrace: str = "",
        command_index: int | None = None,
        command_name: str | None = None,
        command_type: int | None = None,
        next_retry_delay_ms: int | None = None,
    ) -> None:
        """End the attempt with a retryable error; the server retries it."""
        msg = pb.ErrorMessage(code=code, message=message, stacktrace=stacktrace)
        if command_index is not None:
            msg.related_command_index = command_index
        if command_name is not None:
            msg.related_command_name = command_name
        if command_type is not None:
            msg.related_command_type = command_type
        if next_retry_delay_ms is not None:
            msg.next_retry_delay = next_retry_delay_ms
        self._end_with(encode_frame(MessageType.ERROR, msg.SerializeToString()))

    def fail_mismatch(self) -> None:
        """Report the replay divergence (code 570) naming the journal entry."""
        assert self.mismatch is not None
        index, recorded_type = self._mismatch_at
        self.fail(self.mismatch.code, str(self.mismatch), command_index=index, command_type=recorded_type)

    def _end_with(self, frame: bytes) -> None:
        if self.closed:
            raise MachineClosed("the invocation already ended")
        self._out.append(frame)
        self.closed = True

    # ---- output -------------------------------------------------------------------------------

    def take_output(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data
