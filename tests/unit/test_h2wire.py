"""The invoker's sans-IO HTTP/2 client connection (`h2wire`): bytes in, events and frames out.

The peer's frames are built by hand from RFC 9113's layouts; response header blocks are encoded
with jh2's HPACK encoder (an independent implementation of RFC 7541)."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jh2 import hpack

from perdure.server.invoker import h2wire as w
from perdure.server.invoker.h2wire import H2ProtocolError, H2Wire, StreamClosed, encode_literal

STREAM_WINDOW = 1 << 20
CONN_WINDOW = 64 << 20


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return struct.pack(">I", n)[1:] + bytes((ftype, flags)) + struct.pack(">I", sid) + payload


def parse(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """Frames as (type, flags, stream id, payload); the client preface skipped."""
    if data.startswith(w.PREFACE):
        data = data[len(w.PREFACE) :]
    out = []
    while data:
        n = int.from_bytes(data[:3], "big")
        out.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF, data[9 : 9 + n]))
        data = data[9 + n :]
    return out


def settings_payload(**values: int) -> bytes:
    codes = {"initial_window": 4, "max_frame": 5, "max_concurrent": 3, "enable_push": 2, "table": 1}
    return b"".join(struct.pack(">HI", codes[k], v) for k, v in values.items())


def response_block(status: int = 200, *extra: tuple[str, str], enc: hpack.Encoder | None = None) -> bytes:
    enc = enc or hpack.Encoder()
    return bytes(enc.encode([(":status", str(status)), *extra]))


@pytest.fixture
def wire() -> H2Wire:
    c = H2Wire(stream_window=STREAM_WINDOW, connection_window=CONN_WINDOW)
    c.initiate()
    c.data_to_send()
    return c


def test_initiate_sends_preface_settings_and_the_connection_window() -> None:
    c = H2Wire(stream_window=STREAM_WINDOW, connection_window=CONN_WINDOW)
    c.initiate()
    data = c.data_to_send()
    assert data.startswith(w.PREFACE)
    frames = parse(data)
    assert frames[0][:3] == (w.SETTINGS, 0, 0)
    assert struct.pack(">HI", 2, 0) in frames[0][3] and struct.pack(">HI", 4, STREAM_WINDOW) in frames[0][3]
    assert frames[1] == (w.WINDOW_UPDATE, 0, 0, struct.pack(">I", CONN_WINDOW - 65535))


def test_a_full_duplex_exchange() -> None:
    c = H2Wire(stream_window=STREAM_WINDOW, connection_window=CONN_WINDOW)
    c.initiate()
    c.data_to_send()
    head = encode_literal(b":method", b"POST") + encode_literal(b":path", b"/invoke/S/h")
    sid = c.open_stream(head)
    c.send_data(sid, b"start")
    frames = parse(c.data_to_send())
    assert frames == [(w.HEADERS, w.END_HEADERS, 1, head), (w.DATA, 0, 1, b"start")]
    hdrs = hpack.Decoder().decode(head)
    assert hdrs == [(":method", "POST"), (":path", "/invoke/S/h")]
    events = c.receive(frame(w.HEADERS, w.END_HEADERS, 1, response_block(200, ("content-type", "x"))))
    assert events == [(w.EV_RESPONSE, 1, 200, [("content-type", "x")])]
    assert c.receive(frame(w.DATA, 0, 1, b"m1")) == [(w.EV_DATA, 1, b"m1", 2)]
    c.send_data(sid, b"more")  # after response data arrived: full duplex
    c.end_stream(sid)
    assert parse(c.data_to_send()) == [(w.DATA, 0, 1, b"more"), (w.DATA, w.END_STREAM, 1, b"")]
    assert c.receive(frame(w.DATA, w.END_STREAM, 1, b"end")) == [
        (w.EV_DATA, 1, b"end", 3),
        (w.EV_ENDED, 1, None, None),
    ]
    assert c.open_streams() == 0


def test_stream_ids_are_odd_and_increasing(wire: H2Wire) -> None:
    assert [wire.open_stream(b"") for _ in range(3)] == [1, 3, 5]


def test_settings_are_applied_and_acknowledged(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    wire.data_to_send()
    events = wire.receive(frame(w.SETTINGS, 0, 0, settings_payload(initial_window=100, max_concurrent=7)))
    assert events == [(w.EV_SETTINGS, 0, True, None)]
    assert parse(wire.data_to_send()) == [(w.SETTINGS, w.ACK, 0, b"")]
    assert wire.remote_max_concurrent == 7
    assert wire.send_window(sid) == 100  # the stream's window moved with the setting
    assert wire.receive(frame(w.SETTINGS, w.ACK, 0)) == []  # our settings acknowledged: nothing to do


def test_send_window_respects_both_windows_and_the_frame_size(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    assert wire.send_window(sid) == 16384  # the frame size bounds it first
    wire.receive(frame(w.SETTINGS, 0, 0, settings_payload(max_frame=1 << 20)))
    assert wire.send_window(sid) == 65535
    for _ in range(3):
        wire.send_data(sid, b"x" * 20000)
    assert wire.send_window(sid) == 65535 - 60000
    with pytest.raises(ValueError):
        wire.send_data(sid, b"x" * 6000)
    wire.receive(frame(w.WINDOW_UPDATE, 0, sid, struct.pack(">I", 100000)))
    assert wire.send_window(sid) == 5535  # now the connection's window is the smaller one
    events = wire.receive(frame(w.WINDOW_UPDATE, 0, 0, struct.pack(">I", 100000)))
    assert events == [(w.EV_WINDOW, 0, None, None)]
    assert wire.send_window(sid) == 65535 + 100000 - 60000


def test_received_data_is_acknowledged_by_half_windows(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    wire.receive(frame(w.HEADERS, w.END_HEADERS, sid, response_block()))
    chunk = b"y" * 16384
    for _ in range(40):  # 640 KiB: beyond half the stream window
        wire.receive(frame(w.DATA, 0, sid, chunk))
        wire.acknowledge(sid, len(chunk))
    updates = [f for f in parse(wire.data_to_send()) if f[0] == w.WINDOW_UPDATE]
    assert updates == [(w.WINDOW_UPDATE, 0, sid, struct.pack(">I", 32 * 16384))]


def test_padding_is_stripped_and_acknowledged_at_once(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    wire.receive(frame(w.HEADERS, w.END_HEADERS | w.PADDED, sid, b"\x03" + response_block() + b"\x00" * 3))
    events = wire.receive(frame(w.DATA, w.PADDED, sid, b"\x04abc" + b"\x00" * 4))
    assert events == [(w.EV_DATA, sid, b"abc", 8)]


def test_a_header_block_split_over_continuation_frames(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    block = response_block(200, ("x-long", "v" * 300))
    assert wire.receive(frame(w.HEADERS, 0, sid, block[:10])) == []
    assert wire.receive(frame(w.CONTINUATION, 0, sid, block[10:20])) == []
    events = wire.receive(frame(w.CONTINUATION, w.END_HEADERS, sid, block[20:]))
    assert events == [(w.EV_RESPONSE, sid, 200, [("x-long", "v" * 300)])]


def test_a_big_request_header_block_goes_out_in_continuation_frames(wire: H2Wire) -> None:
    block = encode_literal(b"x-big", b"z" * 40000)
    sid = wire.open_stream(block, end_stream=True)
    frames = parse(wire.data_to_send())
    assert [(f[0], f[1]) for f in frames] == [
        (w.HEADERS, w.END_STREAM),
        (w.CONTINUATION, 0),
        (w.CONTINUATION, w.END_HEADERS),
    ]
    assert b"".join(f[3] for f in frames) == block and all(f[2] == sid for f in frames)


def test_another_frame_inside_a_header_block_is_a_protocol_error(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    wire.receive(frame(w.HEADERS, 0, sid, response_block()[:1]))
    with pytest.raises(H2ProtocolError):
        wire.receive(frame(w.DATA, 0, sid, b"x"))


def test_informational_responses_are_skipped_and_trailers_end_the_stream(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    enc = hpack.Encoder()
    assert wire.receive(frame(w.HEADERS, w.END_HEADERS, sid, response_block(100, enc=enc))) == []
    assert wire.receive(frame(w.HEADERS, w.END_HEADERS, sid, response_block(200, enc=enc))) == [
        (w.EV_RESPONSE, sid, 200, [])
    ]
    trailers = bytes(enc.encode([("grpc-status", "0")]))
    assert wire.receive(frame(w.HEADERS, w.END_HEADERS | w.END_STREAM, sid, trailers)) == [
        (w.EV_ENDED, sid, None, None)
    ]


def test_the_decoder_sees_blocks_of_streams_closed_here(wire: H2Wire) -> None:
    """A block for a reset stream may fill the dynamic table that later blocks refer to."""
    enc = hpack.Encoder()
    first, second = wire.open_stream(b""), wire.open_stream(b"")
    wire.reset_stream(first, 8)
    wire.receive(frame(w.HEADERS, w.END_HEADERS, first, response_block(200, ("x-k", "indexed"), enc=enc)))
    events = wire.receive(
        frame(w.HEADERS, w.END_HEADERS, second, response_block(200, ("x-k", "indexed"), enc=enc))
    )
    assert events == [(w.EV_RESPONSE, second, 200, [("x-k", "indexed")])]


def test_repeated_indexed_blocks_follow_every_change_of_the_table(wire: H2Wire) -> None:
    """An all-indexed block decoded before means the same until a block changes the table."""
    enc = hpack.Encoder()
    seen = []
    for value in ("1", "1", "2", "2", "2"):  # the encoder indexes each new value of x-v
        sid = wire.open_stream(b"")
        block = response_block(200, ("x-v", value), enc=enc)
        events = wire.receive(frame(w.HEADERS, w.END_HEADERS | w.END_STREAM, sid, block))
        seen.append((block[0] >= 0x80 and all(b & 0x80 for b in block), events[0][3]))
    assert [headers for _, headers in seen] == [[("x-v", v)] for v in ("1", "1", "2", "2", "2")]
    # The repeats were the one-byte indexed blocks, and the same bytes after the change said "2".
    assert [indexed for indexed, _ in seen] == [False, True, False, True, True]


def test_reset_goaway_and_ping(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    wire.data_to_send()
    assert wire.receive(frame(w.RST_STREAM, 0, sid, struct.pack(">I", 7))) == [(w.EV_RESET, sid, 7, None)]
    assert wire.send_window(sid) == 0
    with pytest.raises(StreamClosed):
        wire.send_data(sid, b"x")
    wire.receive(frame(w.PING, 0, 0, b"12345678"))
    assert parse(wire.data_to_send()) == [(w.PING, w.ACK, 0, b"12345678")]
    assert wire.receive(frame(w.GOAWAY, 0, 0, struct.pack(">II", 1, 0) + b"bye")) == [
        (w.EV_GOAWAY, 1, 0, None)
    ]


def test_local_reset_and_close_send_their_frames(wire: H2Wire) -> None:
    sid = wire.open_stream(b"")
    wire.data_to_send()
    wire.reset_stream(sid, 8)
    wire.reset_stream(sid, 8)  # once only
    wire.close()
    assert parse(wire.data_to_send()) == [
        (w.RST_STREAM, 0, sid, struct.pack(">I", 8)),
        (w.GOAWAY, 0, 0, struct.pack(">II", 0, 0)),
    ]
    # Frames still in flight for the reset stream are dropped, the connection window still counts.
    assert wire.receive(frame(w.DATA, 0, sid, b"late")) == []


@pytest.mark.parametrize(
    ("bytes_in", "what"),
    [
        (frame(w.DATA, 0, 1, b"x"), "DATA on an idle stream"),
        (frame(w.DATA, 0, 0, b"x"), "DATA on stream 0"),
        (frame(w.SETTINGS, 0, 1, b""), "SETTINGS on a stream"),
        (frame(w.SETTINGS, 0, 0, b"\x00\x04"), "SETTINGS of a bad length"),
        (frame(w.SETTINGS, 0, 0, settings_payload(max_frame=100)), "MAX_FRAME_SIZE below the minimum"),
        (frame(w.SETTINGS, 0, 0, settings_payload(initial_window=1 << 31)), "window above 2^31-1"),
        (frame(w.PUSH_PROMISE, w.END_HEADERS, 1, b"\x00\x00\x00\x02"), "a push"),
        (frame(w.PING, 0, 0, b"short"), "a short PING"),
        (frame(w.WINDOW_UPDATE, 0, 0, struct.pack(">I", 0)), "a zero connection window update"),
        (frame(w.DATA, 0, 1, b"x" * 20000), "a frame above our maximum frame size"),
        (frame(w.CONTINUATION, w.END_HEADERS, 1, b""), "CONTINUATION out of nowhere"),
    ],
)
def test_protocol_errors(bytes_in: bytes, what: str) -> None:
    c = H2Wire(stream_window=STREAM_WINDOW, connection_window=CONN_WINDOW)
    c.initiate()
    with pytest.raises(H2ProtocolError):
        c.receive(bytes_in)


def test_data_beyond_the_stream_window_is_a_flow_control_error() -> None:
    c = H2Wire(stream_window=16384, connection_window=CONN_WINDOW)
    sid = c.open_stream(b"")
    c.receive(frame(w.HEADERS, w.END_HEADERS, sid, response_block()))
    c.receive(frame(w.DATA, 0, sid, b"x" * 16384))
    with pytest.raises(H2ProtocolError) as err:
        c.receive(frame(w.DATA, 0, sid, b"x"))
    assert err.value.code == w.FLOW_CONTROL_ERROR


def test_frames_split_anywhere_give_the_same_events() -> None:
    def events_for(chunks: list[bytes]) -> list[w.Event]:
        c = H2Wire(stream_window=STREAM_WINDOW, connection_window=CONN_WINDOW)
        sid = c.open_stream(b"")
        assert sid == 1
        out: list[w.Event] = []
        for chunk in chunks:
            out.extend(c.receive(chunk))
        return out

    stream = (
        frame(w.SETTINGS, 0, 0, settings_payload(max_concurrent=10))
        + frame(w.HEADERS, w.END_HEADERS, 1, response_block(200, ("a", "b")))
        + frame(w.DATA, 0, 1, b"hello")
        + frame(w.DATA, w.END_STREAM, 1, b"world")
    )
    whole = events_for([stream])
    assert [e[0] for e in whole] == [w.EV_SETTINGS, w.EV_RESPONSE, w.EV_DATA, w.EV_DATA, w.EV_ENDED]
    for cut in range(1, len(stream)):
        assert events_for([stream[:cut], stream[cut:]]) == whole
    assert events_for([stream[i : i + 1] for i in range(len(stream))]) == whole


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 12), st.integers(0, 255), st.integers(0, 6), st.binary(max_size=40)))
)
def test_hostile_frames_raise_only_protocol_errors(frames: list[tuple[int, int, int, bytes]]) -> None:
    c = H2Wire(stream_window=STREAM_WINDOW, connection_window=CONN_WINDOW)
    c.initiate()
    for _ in range(3):
        c.open_stream(b"")
    data = b"".join(frame(t, f, s, p) for t, f, s, p in frames)
    with contextlib.suppress(H2ProtocolError):  # anything else escaping fails the test
        c.receive(data)
    c.data_to_send()


def test_a_changed_header_table_size_is_signalled_once_in_the_next_block(wire: H2Wire) -> None:
    head = encode_literal(b":method", b"POST")
    wire.receive(frame(w.SETTINGS, 0, 0, settings_payload(max_concurrent=5)))  # no table change
    wire.open_stream(head)
    wire.receive(frame(w.SETTINGS, 0, 0, settings_payload(table=0)))
    wire.open_stream(head)
    wire.open_stream(head)
    blocks = [f[3] for f in parse(wire.data_to_send()) if f[0] == w.HEADERS]
    assert blocks == [head, b"\x20" + head, head]
    decoder = hpack.Decoder()
    assert [decoder.decode(b) for b in blocks] == [[(":method", "POST")]] * 3
