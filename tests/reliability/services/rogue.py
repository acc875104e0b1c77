"""A misbehaving service endpoint, written by hand as a raw ASGI app (served by hypercorn over h2c).

`GET /discover` answers a valid manifest for the service `Rogue`; `POST /invoke/Rogue/{handler}`
answers with whatever that handler's name asks for: wrong message orders, unknown message types,
bad and huge declared lengths, truncated frames, garbage protobuf, non-2xx statuses, wrong
content types, a stream reset mid-way. The `fuzz` handler answers with the bytes the caller put
(hex encoded, as a JSON string) in the invocation's input, so tests can choose them freely.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Awaitable, Callable
from typing import Any

from perdure.protocol import messages_pb2 as pb

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

PROTOCOL_VERSION = 5
INVOKE_CONTENT_TYPE = f"application/vnd.restate.invocation.v{PROTOCOL_VERSION}"
MANIFEST_CONTENT_TYPE = "application/vnd.restate.endpointmanifest.v1+json"
INPUT_TYPE, OUTPUT_TYPE, END_TYPE = 0x0400, 0x0401, 0x0003
REQUEST_BYTES_MAX = 1 << 20


def frame(msg_type: int, body: bytes, declared_length: int | None = None) -> bytes:
    """A protocol frame: u16 type, u16 flags, u32 length (declared_length lies when given)."""
    length = len(body) if declared_length is None else declared_length
    return struct.pack(">HHI", msg_type, 0, length) + body


def output(text: str) -> bytes:
    return frame(
        OUTPUT_TYPE,
        pb.OutputCommandMessage(value=pb.Value(content=json.dumps(text).encode())).SerializeToString(),
    )


END = frame(END_TYPE, b"")

# handler -> (HTTP status, content type, response body); None body means "reset the stream".
BEHAVIOURS: dict[str, tuple[int, str, bytes | None]] = {
    "unknown_type": (200, INVOKE_CONTENT_TYPE, frame(0x7777, b"\x01\x02") + output("x") + END),
    "message_after_end": (200, INVOKE_CONTENT_TYPE, output("x") + END + output("again")),
    "end_without_output": (200, INVOKE_CONTENT_TYPE, END),
    "notification_from_sdk": (200, INVOKE_CONTENT_TYPE, frame(0x8011, b"\x08\x01") + END),
    "short_body": (200, INVOKE_CONTENT_TYPE, frame(OUTPUT_TYPE, b"\x72\x03abc", declared_length=100)),
    "huge_length": (200, INVOKE_CONTENT_TYPE, frame(OUTPUT_TYPE, b"", declared_length=0xFFFFFFF0)),
    "truncated_header": (200, INVOKE_CONTENT_TYPE, b"\x04\x01\x00"),
    "garbage_protobuf": (200, INVOKE_CONTENT_TYPE, frame(OUTPUT_TYPE, b"\xff\xff\xff\xff\xff\x0f") + END),
    "no_messages": (200, INVOKE_CONTENT_TYPE, b""),
    "status_500": (500, "text/plain", b"boom"),
    "status_404": (404, "text/plain", b"nope"),
    "status_400": (400, "text/plain", b"bad"),
    "wrong_content_type": (200, "text/html", b"<html>hello</html>"),
    "reset_mid_stream": (200, INVOKE_CONTENT_TYPE, None),
}
HANDLERS = [*BEHAVIOURS, "fuzz"]


def manifest() -> bytes:
    handlers = [
        {
            "name": name,
            "input": {"required": False, "contentType": "application/json"},
            "output": {"setContentTypeIfEmpty": False, "contentType": "application/json"},
        }
        for name in HANDLERS
    ]
    return json.dumps(
        {
            "protocolMode": "BIDI_STREAM",
            "minProtocolVersion": PROTOCOL_VERSION,
            "maxProtocolVersion": PROTOCOL_VERSION,
            "services": [{"name": "Rogue", "ty": "SERVICE", "handlers": handlers}],
        }
    ).encode()


async def _respond(send: Send, status: int, content_type: str, body: bytes, more: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()), (b"x-restate-server", b"rogue/0")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": more})


async def _input_value(receive: Receive) -> bytes:
    """Read request frames until the Input command and return its value."""
    buf = b""
    while len(buf) < REQUEST_BYTES_MAX:
        msg = await receive()
        buf += msg.get("body", b"")
        offset = 0
        while len(buf) - offset >= 8:
            msg_type, _, length = struct.unpack(">HHI", buf[offset : offset + 8])
            if len(buf) - offset - 8 < length:
                break
            if msg_type == INPUT_TYPE:
                parsed = pb.InputCommandMessage.FromString(buf[offset + 8 : offset + 8 + length])
                return bytes(parsed.value.content)
            offset += 8 + length
        if not msg.get("more_body", False):
            break
    return b""


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    path: str = scope["path"]
    if path.endswith("/discover"):
        await _respond(send, 200, MANIFEST_CONTENT_TYPE, manifest())
        return
    handler = path.rsplit("/", 1)[-1]
    if handler == "fuzz":
        raw = json.loads(await _input_value(receive) or b'""')
        await _respond(send, 200, INVOKE_CONTENT_TYPE, bytes.fromhex(raw))
        return
    status, content_type, body = BEHAVIOURS.get(handler, (404, "text/plain", b"unknown handler"))
    if body is None:
        await _respond(send, status, content_type, output("half")[:5], more=True)
        raise RuntimeError("rogue: reset the stream mid-way")
    await _respond(send, status, content_type, body)
