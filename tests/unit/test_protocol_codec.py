"""The protocol layer against frames captured from the real SDK and server
(service-protocol reference, section 9.1), byte for byte."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode, encode
from perdure.protocol.errors import ProtocolError
from perdure.protocol.framing import FrameDecoder, encode_frame
from perdure.protocol.ids import (
    IdError,
    InvocationId,
    awakeable_id,
    parse_awakeable_id,
)

CAPTURED_RUN = bytes.fromhex("0411000000000009" + "5801620562756 96c64".replace(" ", ""))
CAPTURED_END = bytes.fromhex("0003000000000000")
REAL_RAW_ID = bytes.fromhex("1f7d480fc486fc307e2763c50cf2a0ecd5a9c6df23de31aa")
REAL_ID = "inv_14cKIVRwHmmH5b9u58eYAsYNhv0sfxagTc"


def test_run_command_captured_from_python_sdk_decodes_and_reencodes_identically() -> None:
    frames = FrameDecoder().feed(CAPTURED_RUN)
    assert len(frames) == 1 and frames[0].type == T.RUN and frames[0].flags == 0
    msg = decode(frames[0].type, frames[0].body)
    assert msg.result_completion_id == 1 and msg.name == "build"
    assert encode(msg) == CAPTURED_RUN


def test_propose_run_completion_carries_raw_bytes_not_a_value_message() -> None:
    msg = pb.ProposeRunCompletionMessage(result_completion_id=1, value=b'"Hello, Ann!"')
    wire = encode(msg)
    assert wire[:8] == bytes.fromhex("0005000000000011")
    assert wire[8:11] == bytes.fromhex("08 01 72".replace(" ", ""))


def test_run_completion_notification_wraps_value() -> None:
    n = pb.NotificationMessage(completion_id=1, value=pb.Value(content=b'"Hello, Ann!"'))
    wire = encode(n, T.RUN_COMPLETION)
    assert wire[:8] == bytes.fromhex("8011000000000013")
    assert wire[8:12] == bytes.fromhex("08012a0f")


def test_void_output_is_an_empty_value_not_absent() -> None:
    out = pb.OutputCommandMessage(value=pb.Value())
    assert out.SerializeToString() == bytes.fromhex("7200")
    assert decode(T.OUTPUT, bytes.fromhex("7200")).WhichOneof("result") == "value"


def test_end_message_is_an_empty_body() -> None:
    assert encode(pb.EndMessage()) == CAPTURED_END


def test_messages_split_across_chunks_and_several_per_chunk() -> None:
    stream = CAPTURED_RUN + CAPTURED_END + CAPTURED_RUN
    for cut in range(len(stream) + 1):
        dec = FrameDecoder()
        frames = dec.feed(stream[:cut]) + dec.feed(stream[cut:])
        assert [f.type for f in frames] == [T.RUN, T.END, T.RUN]
        assert dec.buffered == 0


def test_oversized_message_is_a_protocol_error() -> None:
    dec = FrameDecoder(message_size_max=16)
    with pytest.raises(ProtocolError, match="over the limit"):
        dec.feed(encode_frame(T.RUN, b"x" * 17))


def test_unknown_message_type_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="unknown message type"):
        decode(0x0999, b"")


def test_invocation_id_matches_the_real_server_format() -> None:
    iid = InvocationId.from_raw(REAL_RAW_ID)
    assert str(iid) == REAL_ID
    assert InvocationId.parse(REAL_ID) == iid


@pytest.mark.parametrize(("text", "reason"), [("inv_1nope", "bad length"), ("xyz_1abc", "bad prefix")])
def test_malformed_invocation_ids_say_why(text: str, reason: str) -> None:
    with pytest.raises(IdError, match=reason):
        InvocationId.parse(text)


def test_awakeable_id_round_trips_and_starts_signals_at_17() -> None:
    iid = InvocationId.from_raw(REAL_RAW_ID)
    aid = awakeable_id(iid, 17)
    assert aid.startswith("sign_1") and len(aid) == 44 and aid.endswith("AAAAEQ")
    ref = parse_awakeable_id(aid)
    assert ref.invocation == iid and ref.index == 17 and not ref.legacy


@given(st.binary(max_size=200))
def test_frame_decoder_never_crashes_on_garbage(data: bytes) -> None:
    dec = FrameDecoder(message_size_max=1024)
    try:
        for f in dec.feed(data):
            with contextlib.suppress(ProtocolError):
                decode(f.type, f.body)
    except ProtocolError:
        pass


@given(st.integers(min_value=0, max_value=2**64 - 1), st.binary(min_size=16, max_size=16))
def test_invocation_id_text_round_trips(pk: int, uuid: bytes) -> None:
    iid = InvocationId(pk, uuid)
    assert InvocationId.parse(str(iid)) == iid
