"""Message types of protocol V5/V6 and their protobuf codecs. Sans-IO."""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from google.protobuf.message import DecodeError, Message

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.errors import ProtocolError
from perdure.protocol.framing import Frame, encode_frame


class MessageType(IntEnum):
    START = 0x0000
    SUSPENSION = 0x0001
    ERROR = 0x0002
    END = 0x0003
    COMMAND_ACK = 0x0004
    PROPOSE_RUN_COMPLETION = 0x0005

    INPUT = 0x0400
    OUTPUT = 0x0401
    GET_LAZY_STATE = 0x0402
    SET_STATE = 0x0403
    CLEAR_STATE = 0x0404
    CLEAR_ALL_STATE = 0x0405
    GET_LAZY_STATE_KEYS = 0x0406
    GET_EAGER_STATE = 0x0407
    GET_EAGER_STATE_KEYS = 0x0408
    GET_PROMISE = 0x0409
    PEEK_PROMISE = 0x040A
    COMPLETE_PROMISE = 0x040B
    SLEEP = 0x040C
    CALL = 0x040D
    ONE_WAY_CALL = 0x040E
    SEND_SIGNAL = 0x0410
    RUN = 0x0411
    ATTACH_INVOCATION = 0x0412
    GET_INVOCATION_OUTPUT = 0x0413
    COMPLETE_AWAKEABLE = 0x0414

    GET_LAZY_STATE_COMPLETION = 0x8002
    GET_LAZY_STATE_KEYS_COMPLETION = 0x8006
    GET_PROMISE_COMPLETION = 0x8009
    PEEK_PROMISE_COMPLETION = 0x800A
    COMPLETE_PROMISE_COMPLETION = 0x800B
    SLEEP_COMPLETION = 0x800C
    CALL_COMPLETION = 0x800D
    CALL_INVOCATION_ID_COMPLETION = 0x800E
    RUN_COMPLETION = 0x8011
    ATTACH_INVOCATION_COMPLETION = 0x8012
    GET_INVOCATION_OUTPUT_COMPLETION = 0x8013
    SIGNAL = 0xFBFF


COMMAND_MIN = 0x0400
NOTIFICATION_MIN = 0x8000
CUSTOM_MIN = 0xFC00

# Which notification completes which command's result_completion_id.
COMPLETION_TYPE_OF: dict[int, int] = {
    MessageType.GET_LAZY_STATE: MessageType.GET_LAZY_STATE_COMPLETION,
    MessageType.GET_LAZY_STATE_KEYS: MessageType.GET_LAZY_STATE_KEYS_COMPLETION,
    MessageType.GET_PROMISE: MessageType.GET_PROMISE_COMPLETION,
    MessageType.PEEK_PROMISE: MessageType.PEEK_PROMISE_COMPLETION,
    MessageType.COMPLETE_PROMISE: MessageType.COMPLETE_PROMISE_COMPLETION,
    MessageType.SLEEP: MessageType.SLEEP_COMPLETION,
    MessageType.CALL: MessageType.CALL_COMPLETION,
    MessageType.RUN: MessageType.RUN_COMPLETION,
    MessageType.ATTACH_INVOCATION: MessageType.ATTACH_INVOCATION_COMPLETION,
    MessageType.GET_INVOCATION_OUTPUT: MessageType.GET_INVOCATION_OUTPUT_COMPLETION,
}

MESSAGE_CLASSES: dict[int, type[Message]] = {
    MessageType.START: pb.StartMessage,
    MessageType.SUSPENSION: pb.SuspensionMessage,
    MessageType.ERROR: pb.ErrorMessage,
    MessageType.END: pb.EndMessage,
    MessageType.COMMAND_ACK: pb.CommandAckMessage,
    MessageType.PROPOSE_RUN_COMPLETION: pb.ProposeRunCompletionMessage,
    MessageType.INPUT: pb.InputCommandMessage,
    MessageType.OUTPUT: pb.OutputCommandMessage,
    MessageType.GET_LAZY_STATE: pb.GetLazyStateCommandMessage,
    MessageType.SET_STATE: pb.SetStateCommandMessage,
    MessageType.CLEAR_STATE: pb.ClearStateCommandMessage,
    MessageType.CLEAR_ALL_STATE: pb.ClearAllStateCommandMessage,
    MessageType.GET_LAZY_STATE_KEYS: pb.GetLazyStateKeysCommandMessage,
    MessageType.GET_EAGER_STATE: pb.GetEagerStateCommandMessage,
    MessageType.GET_EAGER_STATE_KEYS: pb.GetEagerStateKeysCommandMessage,
    MessageType.GET_PROMISE: pb.GetPromiseCommandMessage,
    MessageType.PEEK_PROMISE: pb.PeekPromiseCommandMessage,
    MessageType.COMPLETE_PROMISE: pb.CompletePromiseCommandMessage,
    MessageType.SLEEP: pb.SleepCommandMessage,
    MessageType.CALL: pb.CallCommandMessage,
    MessageType.ONE_WAY_CALL: pb.OneWayCallCommandMessage,
    MessageType.SEND_SIGNAL: pb.SendSignalCommandMessage,
    MessageType.RUN: pb.RunCommandMessage,
    MessageType.ATTACH_INVOCATION: pb.AttachInvocationCommandMessage,
    MessageType.GET_INVOCATION_OUTPUT: pb.GetInvocationOutputCommandMessage,
    MessageType.COMPLETE_AWAKEABLE: pb.CompleteAwakeableCommandMessage,
}
for _t in (
    *COMPLETION_TYPE_OF.values(),
    MessageType.CALL_INVOCATION_ID_COMPLETION,
    MessageType.SIGNAL,
):
    MESSAGE_CLASSES[_t] = pb.NotificationMessage

_TYPE_OF_CLASS: dict[type[Message], int] = {
    cls: t for t, cls in MESSAGE_CLASSES.items() if cls is not pb.NotificationMessage
}


def is_command(msg_type: int) -> bool:
    return COMMAND_MIN <= msg_type < NOTIFICATION_MIN


def is_notification(msg_type: int) -> bool:
    return NOTIFICATION_MIN <= msg_type < CUSTOM_MIN


def is_custom(msg_type: int) -> bool:
    return msg_type >= CUSTOM_MIN


def type_name(msg_type: int) -> str:
    try:
        return MessageType(msg_type).name
    except ValueError:
        return f"0x{msg_type:04x}"


def decode(msg_type: int, body: bytes) -> Any:
    """Decode a body of a known message type; ProtocolError otherwise."""
    cls = MESSAGE_CLASSES.get(msg_type)
    if cls is None:
        raise ProtocolError(f"unknown message type 0x{msg_type:04x}")
    msg = cls()
    try:
        msg.ParseFromString(body)
    except DecodeError as exc:
        raise ProtocolError(f"cannot decode {type_name(msg_type)}: {exc}") from exc
    return msg


def decode_frame(frame: Frame) -> Any:
    return decode(frame.type, frame.body)


def message_type(msg: Message) -> int:
    """Type of a non-notification message (notifications share one class)."""
    return _TYPE_OF_CLASS[type(msg)]


def encode(msg: Message, msg_type: int | None = None, flags: int = 0) -> bytes:
    """Header plus body; `msg_type` is required for notifications."""
    if msg_type is None:
        msg_type = _TYPE_OF_CLASS[type(msg)]
    return encode_frame(msg_type, msg.SerializeToString(), flags)


def to_frame(msg: Message, msg_type: int | None = None) -> Frame:
    if msg_type is None:
        msg_type = _TYPE_OF_CLASS[type(msg)]
    return Frame(msg_type, 0, msg.SerializeToString())
