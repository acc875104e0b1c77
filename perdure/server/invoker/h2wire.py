"""Sans-IO client side of one HTTP/2 connection (RFC 9113): the subset the invoker uses.

Bytes in (`receive`), events out; frames out (`data_to_send`). What the invoker needs and nothing
more: h2c prior knowledge or h2 over TLS, requests whose bodies stay open while the response
streams (full duplex), flow control both ways, RST_STREAM, GOAWAY, PING, SETTINGS. The client
never accepts pushes (SETTINGS_ENABLE_PUSH 0), never sends priorities or padding, and encodes its
own headers as plain literals that never enter the peer's dynamic table (`encode_literal`);
response header blocks are decoded with jh2's HPACK decoder (Python), which keeps the
decoder's dynamic table in step with every block the peer sends, including blocks of streams
that are already closed here.

Why not the state machine of a general HTTP/2 library: per frame it builds a frame object, a
flags set, state-machine transitions and an event object, which made it the largest single cost
of the server's hot path (`docs/performance.md`, session 9: 163-193 us of client CPU per stream
with jh2's state machine, 108-121 us with this one; the server's CPU per invocation 0.83-0.87x).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jh2.hpack import Decoder as HpackDecoder

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE = 0, 1, 2, 3, 4, 5
PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 6, 7, 8, 9
END_STREAM = ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

SETTINGS_HEADER_TABLE_SIZE = 1
SETTINGS_ENABLE_PUSH = 2
SETTINGS_MAX_CONCURRENT_STREAMS = 3
SETTINGS_INITIAL_WINDOW_SIZE = 4
SETTINGS_MAX_FRAME_SIZE = 5
SETTINGS_MAX_HEADER_LIST_SIZE = 6

NO_ERROR = 0
PROTOCOL_ERROR = 1
FLOW_CONTROL_ERROR = 3
FRAME_SIZE_ERROR = 6
COMPRESSION_ERROR = 9

DEFAULT_WINDOW = 65535
DEFAULT_MAX_FRAME = 16384
WINDOW_MAX = (1 << 31) - 1
# Our SETTINGS_MAX_FRAME_SIZE is the default: a bigger frame from the peer is a FRAME_SIZE_ERROR.
INBOUND_FRAME_MAX = DEFAULT_MAX_FRAME
HEADER_BLOCK_MAX = 1 << 20  # a response header block (with its CONTINUATIONs) above this: error
INDEXED_BLOCKS_MAX = 64  # distinct all-indexed header blocks remembered per connection
TABLE_SIZE_ZERO = b"\x20"  # HPACK dynamic table size update to 0 (RFC 7541 6.3)

# Event kinds (`receive` returns 4-tuples: kind, stream id, and up to two values of the kind).
EV_RESPONSE = 1  # (kind, sid, status, headers: list[(str, str)])
EV_DATA = 2  # (kind, sid, data: bytes, flow_controlled_length)
EV_ENDED = 3  # (kind, sid)
EV_RESET = 4  # (kind, sid, error_code)
EV_WINDOW = 5  # (kind, sid): more send window (sid 0: the connection's, every stream may go on)
EV_SETTINGS = 6  # (kind, 0, initial_window_changed: bool)
EV_GOAWAY = 7  # (kind, last_stream_id, error_code)

Event = tuple[int, int, Any, Any]  # always four fields, None where a kind has fewer


class H2ProtocolError(Exception):
    """The peer broke the protocol: the connection must be closed (GOAWAY with `code`)."""

    def __init__(self, message: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


class StreamClosed(Exception):
    """A frame was to be sent on a stream that is closed on our side."""


def _header(length: int, ftype: int, flags: int, sid: int) -> bytes:
    return bytes((length >> 16 & 255, length >> 8 & 255, length & 255, ftype, flags)) + sid.to_bytes(4, "big")


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return _header(len(payload), ftype, flags, sid) + payload


def _integer(value: int, prefix_bits: int) -> bytes:
    """HPACK integer (RFC 7541 5.1) with the flag bits of the first octet zero."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes((value,))
    out = bytearray((limit,))
    value -= limit
    while value >= 128:
        out.append(value & 127 | 128)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_literal(name: bytes, value: bytes, sensitive: bool = False) -> bytes:
    """A header field as a literal with a new name and no Huffman coding (RFC 7541 6.2.2, or
    "never indexed", 6.2.3, for sensitive fields): it never enters the peer's dynamic table, so a
    header block is a pure function of its fields and repeated fields can be cached."""
    return b"".join(
        (b"\x10" if sensitive else b"\x00", _integer(len(name), 7), name, _integer(len(value), 7), value)
    )


@dataclass(slots=True)
class _Stream:
    send_window: int
    recv_window: int
    recv_unacked: int = 0
    local_closed: bool = False
    remote_closed: bool = False
    status: int = 0  # the final response's status once its headers arrived


@dataclass(slots=True)
class _Block:
    """A header block waiting for its CONTINUATION frames."""

    sid: int
    end_stream: bool
    parts: list[bytes] = field(default_factory=list)
    size: int = 0


class H2Wire:
    """One client connection's state: streams, both directions' windows, the peer's settings."""

    def __init__(self, *, stream_window: int, connection_window: int, header_list_max: int = 1 << 20) -> None:
        self._out: list[bytes] = []  # joined by data_to_send (memoryview slices of big messages too)
        self._buf = b""
        self._decoder = HpackDecoder(max_header_list_size=header_list_max)
        # Header blocks made only of one-byte indexed fields, decoded: such a block leaves the
        # decoder's table as it was (RFC 7541 6.1), so the same bytes mean the same headers until a
        # block of another kind, which may change the table, empties this. A service's responses
        # are such blocks but for one a second (hypercorn indexes each new `date`).
        self._indexed_blocks: dict[bytes, list[tuple[str, str]]] = {}
        self._streams: dict[int, _Stream] = {}
        self._next_sid = 1
        self._block: _Block | None = None
        self._local_stream_window = stream_window
        self._local_connection_window = connection_window
        self._conn_recv_unacked = 0
        self.conn_send_window = DEFAULT_WINDOW
        self.remote_initial_window = DEFAULT_WINDOW
        self.max_frame = DEFAULT_MAX_FRAME
        self.remote_max_concurrent: int | None = None  # unlimited until the peer says
        self.closed = False
        self._remote_table_size = 4096
        # The peer changed SETTINGS_HEADER_TABLE_SIZE: our next header block starts with a dynamic
        # table size update (RFC 7541 4.2; strict decoders such as nghttp2 insist on it).
        self._table_update_due = False

    # ------------------------------------------------------------------ sending

    def initiate(self) -> None:
        """The connection preface, our SETTINGS and the connection window beyond the default."""
        settings = b"".join(
            k.to_bytes(2, "big") + v.to_bytes(4, "big")
            for k, v in ((SETTINGS_ENABLE_PUSH, 0), (SETTINGS_INITIAL_WINDOW_SIZE, self._local_stream_window))
        )
        self._out.append(PREFACE + _frame(SETTINGS, 0, 0, settings))
        extra = self._local_connection_window - DEFAULT_WINDOW
        if extra > 0:
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, extra.to_bytes(4, "big")))

    def open_stream(self, header_block: bytes, *, end_stream: bool = False) -> int:
        """A new stream with this (already encoded) request header block; returns its id."""
        sid = self._next_sid
        if sid > WINDOW_MAX:
            raise H2ProtocolError("stream ids exhausted on this connection")
        self._next_sid += 2
        stream = _Stream(self.remote_initial_window, self._local_stream_window)
        stream.local_closed = end_stream
        self._streams[sid] = stream
        if self._table_update_due:
            self._table_update_due = False
            header_block = TABLE_SIZE_ZERO + header_block  # we never index: size 0 always fits
        limit = self.max_frame
        flags = END_STREAM if end_stream else 0
        if len(header_block) <= limit:
            self._out.append(_header(len(header_block), HEADERS, flags | END_HEADERS, sid) + header_block)
        else:
            chunks = [header_block[i : i + limit] for i in range(0, len(header_block), limit)]
            self._out.append(_frame(HEADERS, flags, sid, chunks[0]))
            for i, chunk in enumerate(chunks[1:], 2):
                self._out.append(_frame(CONTINUATION, END_HEADERS if i == len(chunks) else 0, sid, chunk))
        return sid

    def open_streams(self) -> int:
        return len(self._streams)

    def send_window(self, sid: int) -> int:
        """How many DATA bytes may go out on `sid` now (both windows, at most one frame)."""
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            return 0
        return min(stream.send_window, self.conn_send_window, self.max_frame)

    def send_data(self, sid: int, data: bytes | memoryview, *, end_stream: bool = False) -> None:
        """One DATA frame; the caller stays within `send_window`."""
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            raise StreamClosed(f"stream {sid} is closed")
        n = len(data)
        if n > min(stream.send_window, self.conn_send_window, self.max_frame):
            raise ValueError("DATA beyond the flow-control window or the frame size")
        stream.send_window -= n
        self.conn_send_window -= n
        self._out.append(_header(n, DATA, END_STREAM if end_stream else 0, sid))
        self._out.append(data)  # type: ignore[arg-type]  # bytes.join takes memoryviews
        if end_stream:
            self._close_local(sid, stream)

    def end_stream(self, sid: int) -> None:
        """Close our side with an empty DATA frame."""
        stream = self._streams.get(sid)
        if stream is None or stream.local_closed:
            raise StreamClosed(f"stream {sid} is closed")
        self._out.append(_header(0, DATA, END_STREAM, sid))
        self._close_local(sid, stream)

    def reset_stream(self, sid: int, error_code: int) -> None:
        """RST_STREAM; the stream is forgotten (frames still in flight for it are dropped)."""
        if self._streams.pop(sid, None) is not None:
            self._out.append(_frame(RST_STREAM, 0, sid, error_code.to_bytes(4, "big")))

    def acknowledge(self, sid: int, size: int) -> None:
        """`size` bytes of the stream's DATA were consumed: reopen the windows by half-window steps."""
        if size <= 0:
            return
        self._conn_recv_unacked += size
        if self._conn_recv_unacked >= self._local_connection_window // 2:
            self._out.append(_frame(WINDOW_UPDATE, 0, 0, self._conn_recv_unacked.to_bytes(4, "big")))
            self._conn_recv_unacked = 0
        stream = self._streams.get(sid)
        if stream is None or stream.remote_closed:
            return
        stream.recv_unacked += size
        if stream.recv_unacked >= self._local_stream_window // 2:
            stream.recv_window += stream.recv_unacked
            self._out.append(_frame(WINDOW_UPDATE, 0, sid, stream.recv_unacked.to_bytes(4, "big")))
            stream.recv_unacked = 0

    def close(self, error_code: int = NO_ERROR) -> None:
        """GOAWAY: no more streams from either side."""
        if not self.closed:
            self.closed = True
            last = 0  # the client accepts no streams from the server
            self._out.append(_frame(GOAWAY, 0, 0, last.to_bytes(4, "big") + error_code.to_bytes(4, "big")))

    def has_output(self) -> bool:
        """Frames wait to be sent (most received DATA frames make none)."""
        return bool(self._out)

    def data_to_send(self) -> bytes:
        if not self._out:
            return b""
        data = b"".join(self._out)
        self._out.clear()
        return data

    def _close_local(self, sid: int, stream: _Stream) -> None:
        stream.local_closed = True
        if stream.remote_closed:
            del self._streams[sid]

    # ------------------------------------------------------------------ receiving

    def receive(self, data: bytes) -> list[Event]:
        """Parse what the peer sent; raises H2ProtocolError when it broke the protocol."""
        buf = self._buf + data if self._buf else data
        events: list[Event] = []
        pos, end = 0, len(buf)
        while end - pos >= 9:
            length = buf[pos] << 16 | buf[pos + 1] << 8 | buf[pos + 2]
            if length > INBOUND_FRAME_MAX:
                raise H2ProtocolError(f"frame of {length} bytes above the maximum", FRAME_SIZE_ERROR)
            if end - pos < 9 + length:
                break
            ftype, flags = buf[pos + 3], buf[pos + 4]
            sid = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = buf[pos + 9 : pos + 9 + length]
            pos += 9 + length
            if self._block is not None and ftype != CONTINUATION:
                raise H2ProtocolError("a header block was interrupted by another frame")
            if ftype == DATA:
                self._on_data(sid, flags, payload, events)
            elif ftype == HEADERS:
                self._on_headers(sid, flags, payload, events)
            elif ftype == CONTINUATION:
                self._on_continuation(sid, flags, payload, events)
            elif ftype == WINDOW_UPDATE:
                self._on_window_update(sid, payload, events)
            elif ftype == RST_STREAM:
                if sid == 0 or len(payload) != 4:
                    raise H2ProtocolError("bad RST_STREAM frame", FRAME_SIZE_ERROR if sid else PROTOCOL_ERROR)
                if self._streams.pop(sid, None) is not None:
                    events.append((EV_RESET, sid, int.from_bytes(payload, "big"), None))
            elif ftype == SETTINGS:
                self._on_settings(sid, flags, payload, events)
            elif ftype == PING:
                if sid != 0 or len(payload) != 8:
                    raise H2ProtocolError("bad PING frame", FRAME_SIZE_ERROR if not sid else PROTOCOL_ERROR)
                if not flags & ACK:
                    self._out.append(_frame(PING, ACK, 0, payload))
            elif ftype == GOAWAY:
                if sid != 0 or len(payload) < 8:
                    raise H2ProtocolError("bad GOAWAY frame")
                last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
                events.append((EV_GOAWAY, last, int.from_bytes(payload[4:8], "big"), None))
            elif ftype == PUSH_PROMISE:
                raise H2ProtocolError("PUSH_PROMISE although push is disabled")
            elif ftype == PRIORITY and (sid == 0 or length != 5):
                raise H2ProtocolError("bad PRIORITY frame", FRAME_SIZE_ERROR if sid else PROTOCOL_ERROR)
            # Unknown frame types are ignored (RFC 9113 5.5).
        self._buf = buf[pos:]
        return events

    def _stream_for_frame(self, sid: int, what: str) -> _Stream | None:
        """The open stream a frame is for; None for one closed here; an error for an idle one."""
        if sid == 0:
            raise H2ProtocolError(f"{what} on stream 0")
        stream = self._streams.get(sid)
        if stream is None and (sid % 2 == 0 or sid >= self._next_sid):
            raise H2ProtocolError(f"{what} on idle stream {sid}")
        return stream

    @staticmethod
    def _unpad(flags: int, payload: bytes, what: str) -> bytes:
        if not flags & PADDED:
            return payload
        if not payload or payload[0] >= len(payload):
            raise H2ProtocolError(f"bad padding in {what}")
        return payload[1 : len(payload) - payload[0]]

    def _on_data(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        stream = self._stream_for_frame(sid, "DATA")
        flow = len(payload)
        data = self._unpad(flags, payload, "DATA")
        if stream is None or stream.remote_closed:
            # Closed here (reset, or finished): still counts against the connection's window.
            self.acknowledge(0, flow)
            if stream is not None:
                raise H2ProtocolError(f"DATA after END_STREAM on stream {sid}")
            return
        if stream.status == 0:
            raise H2ProtocolError(f"DATA before the response headers on stream {sid}")
        stream.recv_window -= flow
        if stream.recv_window < 0:
            raise H2ProtocolError(f"stream {sid} overflowed its flow-control window", FLOW_CONTROL_ERROR)
        if flow != len(data):
            self.acknowledge(sid, flow - len(data))  # the padding: never handed out, never consumed
        events.append((EV_DATA, sid, data, flow))
        if flags & END_STREAM:
            self._close_remote(sid, stream, events)

    def _on_headers(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        self._stream_for_frame(sid, "HEADERS")
        payload = self._unpad(flags, payload, "HEADERS")
        if flags & PRIORITY_FLAG:
            if len(payload) < 5:
                raise H2ProtocolError("HEADERS too short for its priority fields")
            payload = payload[5:]
        block = _Block(sid, bool(flags & END_STREAM), [payload], len(payload))
        if flags & END_HEADERS:
            self._on_block(block, events)
        else:
            self._block = block

    def _on_continuation(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        block = self._block
        if block is None or block.sid != sid:
            raise H2ProtocolError("CONTINUATION without a header block to continue")
        block.parts.append(payload)
        block.size += len(payload)
        if block.size > HEADER_BLOCK_MAX:
            raise H2ProtocolError("response header block too large")
        if flags & END_HEADERS:
            self._block = None
            self._on_block(block, events)

    def _on_block(self, block: _Block, events: list[Event]) -> None:
        raw = block.parts[0] if len(block.parts) == 1 else b"".join(block.parts)
        try:
            # Decoded even for a stream closed here: the decoder's table must see every block.
            headers = self._decoder.decode(raw, False)
        except Exception as exc:  # jh2's HPACK errors
            raise H2ProtocolError(f"HPACK decoding failed: {exc}", COMPRESSION_ERROR) from None
        stream = self._streams.get(block.sid)
        if stream is None or stream.remote_closed:
            return
        sid = block.sid
        if stream.status == 0:
            status = 0
            out: list[tuple[str, str]] = []
            for name, value in headers:
                if name == ":status":
                    status = int(value)
                elif name[:1] != ":":
                    out.append((name, value))
            if status == 0:
                raise H2ProtocolError(f"response without :status on stream {sid}")
            if status < 200:  # informational (100 Continue, 103): the final response follows
                if block.end_stream:
                    raise H2ProtocolError(f"informational response ending stream {sid}")
                return
            stream.status = status
            events.append((EV_RESPONSE, sid, status, out))
        # else: trailers, which the invoker does not use
        if block.end_stream:
            self._close_remote(sid, stream, events)

    def _decode(self, raw: bytes) -> list[tuple[str, str]]:
        try:
            headers: list[tuple[str, str]] = self._decoder.decode(raw)
        except Exception as exc:  # jh2's HPACK errors
            raise H2ProtocolError(f"HPACK decoding failed: {exc}", COMPRESSION_ERROR) from None
        cache = self._indexed_blocks
        if raw and min(raw) >= 0x80 and max(raw) < 0xFF:  # 1xxxxxxx, index below 127: no table change
            if len(cache) >= INDEXED_BLOCKS_MAX:
                cache.clear()
            cache[raw] = headers
        else:  # a literal or a table size update: the table may have changed
            cache.clear()
        return headers

    def _close_remote(self, sid: int, stream: _Stream, events: list[Event]) -> None:
        stream.remote_closed = True
        events.append((EV_ENDED, sid, None, None))
        if stream.local_closed:
            del self._streams[sid]

    def _on_window_update(self, sid: int, payload: bytes, events: list[Event]) -> None:
        if len(payload) != 4:
            raise H2ProtocolError("bad WINDOW_UPDATE frame", FRAME_SIZE_ERROR)
        increment = int.from_bytes(payload, "big") & 0x7FFFFFFF
        if sid == 0:
            if increment == 0:
                raise H2ProtocolError("WINDOW_UPDATE of 0 on the connection")
            self.conn_send_window += increment
            if self.conn_send_window > WINDOW_MAX:
                raise H2ProtocolError("connection window above 2^31-1", FLOW_CONTROL_ERROR)
            events.append((EV_WINDOW, 0, None, None))
            return
        stream = self._streams.get(sid)
        if stream is None:
            return  # closed here; idle ids are not worth a connection error
        if increment == 0:
            self.reset_stream(sid, PROTOCOL_ERROR)
            events.append((EV_RESET, sid, PROTOCOL_ERROR, None))
            return
        stream.send_window += increment
        if stream.send_window > WINDOW_MAX:
            self.reset_stream(sid, FLOW_CONTROL_ERROR)
            events.append((EV_RESET, sid, FLOW_CONTROL_ERROR, None))
            return
        events.append((EV_WINDOW, sid, None, None))

    def _on_settings(self, sid: int, flags: int, payload: bytes, events: list[Event]) -> None:
        if sid != 0:
            raise H2ProtocolError("SETTINGS on a stream")
        if flags & ACK:
            if payload:
                raise H2ProtocolError("SETTINGS ACK with a payload", FRAME_SIZE_ERROR)
            return
        if len(payload) % 6:
            raise H2ProtocolError("SETTINGS payload not a multiple of 6", FRAME_SIZE_ERROR)
        window_changed = False
        for i in range(0, len(payload), 6):
            key = int.from_bytes(payload[i : i + 2], "big")
            value = int.from_bytes(payload[i + 2 : i + 6], "big")
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                if value > WINDOW_MAX:
                    raise H2ProtocolError("INITIAL_WINDOW_SIZE above 2^31-1", FLOW_CONTROL_ERROR)
                delta = value - self.remote_initial_window
                self.remote_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > WINDOW_MAX:
                        raise H2ProtocolError("a stream window above 2^31-1", FLOW_CONTROL_ERROR)
                window_changed = window_changed or delta != 0
            elif key == SETTINGS_MAX_FRAME_SIZE:
                if not DEFAULT_MAX_FRAME <= value <= (1 << 24) - 1:
                    raise H2ProtocolError(f"MAX_FRAME_SIZE {value} out of range")
                self.max_frame = value
            elif key == SETTINGS_MAX_CONCURRENT_STREAMS:
                self.remote_max_concurrent = value
            elif key == SETTINGS_ENABLE_PUSH and value > 1:
                raise H2ProtocolError("ENABLE_PUSH other than 0 or 1")
            elif key == SETTINGS_HEADER_TABLE_SIZE and value != self._remote_table_size:
                self._remote_table_size = value
                self._table_update_due = True
        self._out.append(_frame(SETTINGS, ACK, 0))
        events.append((EV_SETTINGS, 0, window_changed, None))
