"""Journal entries as `sys_journal` shows them: the entry type ("Command: Run",
"Notification: Sleep"), its name, the ids it completes or waits for, and a
JSON rendering. Pure functions over (message type, protobuf body)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from google.protobuf.message import Message

from perdure.protocol.codec import MessageType, decode, is_command, is_notification
from perdure.protocol.errors import ProtocolError

ENTRY_CACHE_MAX = 4096
_T = MessageType

# Notification types named after the command they complete ("Notification: Run").
_NOTIFICATION_NAMES: dict[int, str] = {
    _T.CALL_INVOCATION_ID_COMPLETION: "CallInvocationId",
    _T.SIGNAL: "Signal",
}
_PROMISE_COMMANDS = (_T.GET_PROMISE, _T.PEEK_PROMISE, _T.COMPLETE_PROMISE)
_CALL_COMMANDS = (_T.CALL, _T.ONE_WAY_CALL)


def _camel(snake: str) -> str:
    return "".join(part.capitalize() for part in snake.split("_"))


def kind_name(msg_type: int) -> str:
    """The entry kind after "Command: " or "Notification: " (e.g. "GetEagerState")."""
    special = _NOTIFICATION_NAMES.get(msg_type)
    if special is not None:
        return special
    try:
        name = MessageType(msg_type).name
    except ValueError:
        return f"0x{msg_type:04x}"
    return _camel(name.removesuffix("_COMPLETION"))


def entry_type(msg_type: int) -> str:
    if is_command(msg_type):
        return f"Command: {kind_name(msg_type)}"
    if is_notification(msg_type):
        return f"Notification: {kind_name(msg_type)}"
    return f"Custom: 0x{msg_type:04x}"


@dataclass(frozen=True, slots=True)
class EntryView:
    """What introspection shows of one journal entry."""

    entry_type: str
    name: str | None  # commands only
    completion_id: int | None  # command: the completion id its result arrives under
    notification_id: int | None  # notification: the completion id it carries
    invocation_id_notification: int | None  # call: completion id of its CallInvocationId notification
    invocation_id_value: str | None  # CallInvocationId notification: the callee's id
    invoked_target: str | None
    sleep_wakeup_at_ms: int | None
    promise_name: str | None
    entry_json: str
    entry_lite_json: str


def _target(msg: Any) -> str:
    if msg.key:
        return f"{msg.service_name}/{msg.key}/{msg.handler_name}"
    return f"{msg.service_name}/{msg.handler_name}"


def _plain(value: Any, lite: bool) -> Any:
    """Protobuf field value as JSON data: bytes as byte arrays (as Restate prints them)."""
    if isinstance(value, bytes):
        return list(value)
    if isinstance(value, Message):
        kind = value.DESCRIPTOR.name
        if kind == "Value":
            return list(getattr(value, "content"))  # noqa: B009 - protobuf stubs are untyped
        if kind == "Header":
            return {"name": getattr(value, "key"), "value": getattr(value, "value")}  # noqa: B009
        return _fields(value, lite)
    if isinstance(value, (list, tuple)) or type(value).__name__.startswith("Repeated"):
        return [_plain(v, lite) for v in value]
    return value


# Restate's names for protocol fields in entry JSON.
_COMMON_RENAMES = {"result_completion_id": "completion_id"}
_RENAMES = {"InputCommandMessage": {**_COMMON_RENAMES, "value": "payload"}}


def _fields(msg: Message, lite: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    renames = _RENAMES.get(msg.DESCRIPTOR.name, _COMMON_RENAMES)
    for field, value in msg.ListFields():
        name = renames.get(field.name, field.name)
        if lite and (
            isinstance(value, bytes) or name in ("headers", "value", "payload", "parameter", "content")
        ):
            continue
        out[name] = _plain(value, lite)
    if not lite and "name" in msg.DESCRIPTOR.fields_by_name:
        out.setdefault("name", "")
    return out


def _notification_json(msg_type: int, msg: Any, lite: bool) -> dict[str, Any]:
    which_id = msg.WhichOneof("id")
    ident: dict[str, Any] = {
        "completion_id": {"CompletionId": msg.completion_id},
        "signal_id": {"SignalIndex": msg.signal_id},
        "signal_name": {"SignalName": msg.signal_name},
    }.get(which_id or "", {})
    which = msg.WhichOneof("result")
    result: Any
    if which == "value":
        result = "Success" if lite else {"Success": list(msg.value.content)}
    elif which == "failure":
        failure = {"code": msg.failure.code, "message": msg.failure.message}
        result = "Failure" if lite else {"Failure": failure}
    elif which == "invocation_id":
        result = {"InvocationId": msg.invocation_id}
    elif which == "state_keys":
        keys = [bytes(k).decode(errors="replace") for k in msg.state_keys.keys]
        result = "StateKeys" if lite else {"StateKeys": keys}
    else:
        result = "Void"
    kind = kind_name(msg_type)
    ty: Any = "Signal" if msg_type == _T.SIGNAL else {"Completion": kind}
    if lite:
        return {"Notification": {"ty": ty, "id": ident, "result": result}}
    if msg_type == _T.SIGNAL:
        return {"Notification": {"Signal": {"id": ident, "result": result}}}
    return {"Notification": {"Completion": {kind: {**_flatten_id(ident), "result": result}}}}


def _flatten_id(ident: dict[str, Any]) -> dict[str, Any]:
    if "CompletionId" in ident:
        return {"completion_id": ident["CompletionId"]}
    return {"id": ident}


@lru_cache(maxsize=ENTRY_CACHE_MAX)
def view(msg_type: int, body: bytes) -> EntryView:
    """Decode one stored entry (cached: a query touches the same rows repeatedly)."""
    etype = entry_type(msg_type)
    try:
        msg = decode(msg_type, body)
    except ProtocolError as exc:
        text = orjson.dumps({"Undecodable": str(exc)}).decode()
        return EntryView(etype, None, None, None, None, None, None, None, None, text, text)
    if is_notification(msg_type):
        which = msg.WhichOneof("id")
        return EntryView(
            entry_type=etype,
            name=None,
            completion_id=None,
            notification_id=msg.completion_id if which == "completion_id" else None,
            invocation_id_notification=None,
            invocation_id_value=msg.invocation_id if msg.WhichOneof("result") == "invocation_id" else None,
            invoked_target=None,
            sleep_wakeup_at_ms=None,
            promise_name=None,
            entry_json=orjson.dumps(_notification_json(msg_type, msg, lite=False)).decode(),
            entry_lite_json=orjson.dumps(_notification_json(msg_type, msg, lite=True)).decode(),
        )
    kind = kind_name(msg_type)
    fields = msg.DESCRIPTOR.fields_by_name
    name = msg.entry_name if msg_type == _T.SEND_SIGNAL else (msg.name if "name" in fields else None)
    return EntryView(
        entry_type=etype,
        name=name,
        completion_id=msg.result_completion_id if "result_completion_id" in fields else None,
        notification_id=None,
        invocation_id_notification=msg.invocation_id_notification_idx if msg_type in _CALL_COMMANDS else None,
        invocation_id_value=None,
        invoked_target=_target(msg) if msg_type in _CALL_COMMANDS else None,
        sleep_wakeup_at_ms=msg.wake_up_time if msg_type == _T.SLEEP else None,
        promise_name=msg.key if msg_type in _PROMISE_COMMANDS else None,
        entry_json=orjson.dumps({"Command": {kind: _fields(msg, lite=False)}}).decode(),
        entry_lite_json=orjson.dumps({"Command": {kind: _fields(msg, lite=True)}}).decode(),
    )
