"""`GET /ui/api/invocations/{id}/journal`: one invocation's journal as the web UI draws it.

The UI could read `sys_journal` over `/query`, but that view renders every stored id to
find the rows of one invocation (a scan of the whole journal table) and pairs each command
with its notification by a subquery per row; a 20,000-entry journal among 100,000 stored
invocations then takes tens of seconds. This route reads the journal by its raw id (the
store's primary key, through the storage `Reader`, so every backend has it), pairs commands
with their completions in one pass, and answers a page of entries with payload previews.

Entry fields (short names: a page can hold thousands): `i` index, `ty` entry type
("Command: Run"), `n` name, `at` appended at (ms), `v` payload preview (UTF-8, or base64 when
`b64`), `trunc` when cut, `f` failure `{code, message}`, `key` state key or promise name,
`cid` completion id a command waits on, `nid` completion id a notification carries,
`done`/`done_at` index and time of the notification completing a command, `target` and
`callee` (the callee's invocation id) of calls and sends, `wake` (ms) of a sleep, `x` the
command's other scalar fields (idempotency key, awakeable id, invoke time...)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from perdure.protocol.codec import MessageType, decode, is_notification
from perdure.protocol.errors import ProtocolError
from perdure.protocol.ids import IdError, InvocationId
from perdure.server.processor.model import Entry
from perdure.server.query.entries import entry_type

GetJournal = Callable[[bytes], list[Entry]]
"""Raw invocation id -> its committed journal (the storage Reader's `get_journal`)."""

PAGE_ENTRIES_MAX = 20_000  # entries in one answer; the UI pages beyond
PREVIEW_CHARS_MAX = 1024  # payload preview per entry; the full value is in sys_journal.raw
_VALUE_FIELDS = ("value", "completion_value", "parameter")
_FAILURE_FIELDS = ("failure", "completion_failure")
_SKIPPED = frozenset(
    ("name", "result_completion_id", "completion_id", "invocation_id_notification_idx", "headers", "key")
)


def _preview(data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
        out: dict[str, Any] = {"v": text[:PREVIEW_CHARS_MAX]}
        if len(text) > PREVIEW_CHARS_MAX:
            out["trunc"] = True
    except UnicodeDecodeError:
        cut = data[: PREVIEW_CHARS_MAX * 3 // 4]
        out = {"v": base64.b64encode(cut).decode(), "b64": True}
        if len(cut) < len(data):
            out["trunc"] = True
    return out


def _fields_of(msg: Message) -> dict[str, Any]:
    """Payload, failure, key and other scalars of a decoded command or notification."""
    out: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        name = fd.name
        if name in _VALUE_FIELDS:
            out.update(_preview(bytes(getattr(value, "content", value))))
        elif name in _FAILURE_FIELDS:
            out["f"] = {"code": value.code, "message": value.message}
        elif name == "key":
            out["key"] = value.decode(errors="replace") if isinstance(value, bytes) else value
        elif name == "state_keys" or (fd.message_type is not None and fd.message_type.name == "StateKeys"):
            out["v"] = ", ".join(bytes(k).decode(errors="replace") for k in value.keys)
        elif isinstance(value, (str, int, float, bool)) and name not in _SKIPPED:
            extra[name] = value
    if extra:
        out["x"] = extra
    return out


def _target(msg: Any) -> str:
    if msg.key:
        return f"{msg.service_name}/{msg.key}/{msg.handler_name}"
    return f"{msg.service_name}/{msg.handler_name}"


def _decoded(entry: Entry) -> Any:
    try:
        return decode(entry.type, entry.body)
    except ProtocolError:
        return None


def render_entry(index: int, entry: Entry, msg: Any) -> dict[str, Any]:
    """One entry from its decoded message (None: undecodable). Decodes the protobuf directly:
    sys_journal's JSON renderings cost more than the whole page needs."""
    out: dict[str, Any] = {"i": index, "ty": entry_type(entry.type), "at": entry.appended_at_ms}
    if msg is None:
        out["f"] = {"code": 0, "message": "undecodable entry"}
        return out
    if is_notification(entry.type):
        if msg.WhichOneof("id") == "completion_id":
            out["nid"] = msg.completion_id
    else:
        fields = msg.DESCRIPTOR.fields_by_name
        name = msg.entry_name if entry.type == MessageType.SEND_SIGNAL else getattr(msg, "name", "")
        if name:
            out["n"] = name
        if "result_completion_id" in fields:
            out["cid"] = msg.result_completion_id
        if entry.type in _CALLS:
            out["target"] = _target(msg)
        if entry.type == MessageType.SLEEP:
            out["wake"] = msg.wake_up_time
    out.update(_fields_of(msg))
    return out


_CALLS = (MessageType.CALL, MessageType.ONE_WAY_CALL)


def _links(msgs: Sequence[tuple[Entry, Any]]) -> tuple[dict[int, tuple[int, int]], dict[int, str]]:
    """Completion id -> (index, time) of its notification; notification id -> callee id."""
    done: dict[int, tuple[int, int]] = {}
    callee: dict[int, str] = {}
    for i, (e, msg) in enumerate(msgs):
        if msg is None or not is_notification(e.type) or msg.WhichOneof("id") != "completion_id":
            continue
        if e.type == MessageType.CALL_INVOCATION_ID_COMPLETION:
            if msg.WhichOneof("result") == "invocation_id":
                callee[msg.completion_id] = msg.invocation_id
        else:
            done.setdefault(msg.completion_id, (i, e.appended_at_ms))
    return done, callee


def journal_page(entries: Sequence[Entry], start: int, limit: int) -> dict[str, Any]:
    """Entries [start, start+limit) rendered, each command linked to its completion and callee."""
    msgs = [(e, _decoded(e)) for e in entries]
    done, callee = _links(msgs)
    page = []
    for i in range(start, min(len(entries), start + limit)):
        e, msg = msgs[i]
        out = render_entry(i, e, msg)
        cid = out.get("cid")
        if cid is not None and cid in done:
            out["done"], out["done_at"] = done[cid]
        if e.type in _CALLS and msg is not None and msg.invocation_id_notification_idx in callee:
            out["callee"] = callee[msg.invocation_id_notification_idx]
        page.append(out)
    return {"total": len(entries), "from": start, "entries": page}


def _encoded_page(text_id: str, entries: Sequence[Entry], start: int, limit: int) -> bytes:
    return orjson.dumps({"id": text_id, **journal_page(entries, start, limit)})


def _int_param(request: Request, name: str, default: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = int(raw)  # ValueError: the caller answers 400
    if not 0 <= value <= high:
        raise ValueError(f"{name} must be between 0 and {high}")
    return value


def journal_routes(get_journal: GetJournal) -> list[BaseRoute]:
    async def journal(request: Request) -> Response:
        text = request.path_params["id"]
        try:
            raw = InvocationId.parse(text).raw
            start = _int_param(request, "from", 0, 2**32)
            limit = _int_param(request, "limit", PAGE_ENTRIES_MAX, PAGE_ENTRIES_MAX)
        except (IdError, ValueError) as exc:
            return JSONResponse({"message": str(exc), "restate_code": None}, status_code=400)
        entries = get_journal(raw)  # the store's reader connection belongs to the event loop
        body = await asyncio.to_thread(_encoded_page, text, entries, start, limit)
        return Response(body, media_type="application/json")

    return [Route("/ui/api/invocations/{id}/journal", journal, methods=["GET"])]
