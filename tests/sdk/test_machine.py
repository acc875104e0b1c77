"""The sans-IO invocation machine, fed bytes and read back bytes (including frames captured
from Restate 1.7.12 and the official SDK, service-protocol.md section 9)."""

from __future__ import annotations

import pytest

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType, decode, encode
from perdure.protocol.errors import JournalMismatch, ProtocolError
from perdure.protocol.framing import FrameDecoder
from perdure.protocol.ids import InvocationId, parse_awakeable_id
from perdure.sdk.journal import VOID, Failure
from perdure.sdk.machine import SIGNAL_BASE, Machine, MachineClosed, Target

RAW_ID = bytes.fromhex("1f7d480fc486fc307e2763c50cf2a0ecd5a9c6df23de31aa")
DEBUG_ID = "inv_14cKIVRwHmmH5b9u58eYAsYNhv0sfxagTc"


def start_frame(
    known: int, state: dict[str, bytes] | None = None, partial: bool = True, key: str = ""
) -> bytes:
    msg = pb.StartMessage(
        id=RAW_ID, debug_id=DEBUG_ID, known_entries=known, partial_state=partial, key=key, random_seed=7
    )
    for k, v in (state or {}).items():
        msg.state_map.add(key=k.encode(), value=v)
    return encode(msg)


def input_frame(body: bytes = b'"Ann"') -> bytes:
    msg = pb.InputCommandMessage()
    msg.value.content = body
    return encode(msg)


def notification(msg_type: int, completion_id: int = 0, signal_id: int = 0, **result: object) -> bytes:
    msg = pb.NotificationMessage()
    if signal_id:
        msg.signal_id = signal_id
    else:
        msg.completion_id = completion_id
    if "value" in result:
        msg.value.content = result["value"]  # type: ignore[assignment]
    elif "failure" in result:
        code, text = result["failure"]  # type: ignore[misc]
        msg.failure.code, msg.failure.message = code, text
    elif "invocation_id" in result:
        msg.invocation_id = result["invocation_id"]  # type: ignore[assignment]
    else:
        msg.void.SetInParent()
    return encode(msg, msg_type)


def fresh(**kw: object) -> Machine:
    m = Machine(6)
    m.feed(start_frame(1, **kw) + input_frame())  # type: ignore[arg-type]
    assert m.ready
    return m


def messages(data: bytes) -> list[tuple[int, object]]:
    return [(f.type, decode(f.type, f.body)) for f in FrameDecoder().feed(data)]


def test_greeter_exchange_matches_the_captured_bytes() -> None:
    m = fresh()
    assert m.input.value.content == b'"Ann"'
    handle, index, replayed = m.run("build")
    assert (handle, index, replayed) == (1, 1, False)
    assert m.take_output() == bytes.fromhex("0411000000000009580162056275696c64")
    m.propose_run(handle, b'"Hello, Ann!"')
    assert m.take_output().hex().startswith("0005000000000011080172 0d2248656c6c6f".replace(" ", ""))
    assert m.feed(bytes.fromhex("801100000000001308012a0f0a0d") + b'"Hello, Ann!"')
    assert m.result(handle) == b'"Hello, Ann!"'
    m.output(b'"Hello, Ann!"')
    out = m.take_output()
    assert out.startswith(bytes.fromhex("0401000000000011720f0a0d"))
    assert out.endswith(bytes.fromhex("0003000000000000"))
    assert m.closed


def test_start_and_journal_may_straddle_chunks() -> None:
    data = start_frame(1) + input_frame()
    m = Machine(6)
    for i in range(len(data)):
        assert not m.ready
        m.feed(data[i : i + 1])
    assert m.ready
    assert m.start.debug_id == DEBUG_ID


def test_replayed_run_is_not_executed_again_and_emits_nothing() -> None:
    m = Machine(6)
    run = encode(pb.RunCommandMessage(result_completion_id=1, name="build"))
    m.feed(start_frame(3) + input_frame() + run + notification(MessageType.RUN_COMPLETION, 1, value=b'"x"'))
    handle, _, replayed = m.run("build")
    assert replayed and m.is_completed(handle) and m.result(handle) == b'"x"'
    assert m.take_output() == b""
    assert not m.replaying
    m.sleep(1000)
    assert messages(m.take_output())[0][0] == MessageType.SLEEP


def test_run_stored_without_result_is_replayed_but_must_execute() -> None:
    m = Machine(6)
    m.feed(
        start_frame(2) + input_frame() + encode(pb.RunCommandMessage(result_completion_id=1, name="flaky"))
    )
    handle, _, replayed = m.run("flaky")
    assert replayed and not m.is_completed(handle)
    m.propose_run(handle, Failure(500, "boom"))
    [(t, msg)] = messages(m.take_output())
    assert t == MessageType.PROPOSE_RUN_COMPLETION and msg.failure.message == "boom"  # type: ignore[attr-defined]


def test_changed_command_is_a_journal_mismatch_naming_the_entry() -> None:
    m = Machine(6)
    m.feed(
        start_frame(2) + input_frame() + encode(pb.RunCommandMessage(result_completion_id=1, name="alpha"))
    )
    with pytest.raises(JournalMismatch, match=r"command #1 is RUN\(name='alpha'\).*RUN\(name='beta'\)"):
        m.run("beta")
    with pytest.raises(JournalMismatch):  # sticky: the handler cannot swallow it and go on
        m.sleep(5)
    m.fail_mismatch()
    [(t, err)] = messages(m.take_output())
    assert t == MessageType.ERROR
    assert err.code == 570  # type: ignore[attr-defined]
    assert err.related_command_index == 1  # type: ignore[attr-defined]
    assert err.related_command_type == MessageType.RUN  # type: ignore[attr-defined]


def test_different_command_type_is_a_mismatch() -> None:
    m = Machine(6)
    m.feed(
        start_frame(2)
        + input_frame()
        + encode(pb.SleepCommandMessage(wake_up_time=5, result_completion_id=1))
    )
    with pytest.raises(JournalMismatch, match="SLEEP"):
        m.run("step")


def test_completion_ids_follow_the_capture_call_then_sends() -> None:
    m = fresh()
    assert m.call(Target("Greeter", "greet"), b'"Bob"') == (1, 2)
    assert m.send(Target("Counter", "add", key="c2", idempotency_key="k"), b"1") == 3
    assert (
        m.send(Target("Counter", "add", key="c2", headers={"h": "v"}), b"1", invoke_time_ms=1795593382834)
        == 4
    )
    out = messages(m.take_output())
    call = out[0][1]
    assert (call.invocation_id_notification_idx, call.result_completion_id) == (1, 2)  # type: ignore[attr-defined]
    assert out[2][1].invoke_time == 1795593382834  # type: ignore[attr-defined]
    assert out[1][1].key == "c2" and out[1][1].idempotency_key == "k"  # type: ignore[attr-defined]
    assert [(h.key, h.value) for h in out[2][1].headers] == [("h", "v")]  # type: ignore[attr-defined]
    m.feed(notification(MessageType.CALL_INVOCATION_ID_COMPLETION, 1, invocation_id="inv_1x"))
    assert m.result(1) == "inv_1x"


def test_awakeables_use_signal_ids_from_17_and_suspension_waits_on_cancel_too() -> None:
    m = fresh()
    awakeable_id, handle = m.awakeable()
    ref = parse_awakeable_id(awakeable_id)
    assert ref.index == 17 and ref.invocation == InvocationId.from_raw(RAW_ID)
    assert handle == SIGNAL_BASE + 17
    sleep = m.sleep(10)
    m.take_output()
    m.feed_eof()
    m.suspend([handle, sleep])
    [(t, msg)] = messages(m.take_output())
    assert t == MessageType.SUSPENSION
    assert list(msg.waiting_completions) == [1]  # type: ignore[attr-defined]
    assert list(msg.waiting_signals) == [1, 17]  # type: ignore[attr-defined]
    with pytest.raises(MachineClosed):
        m.sleep(1)


def test_signal_notification_completes_an_awakeable_and_cancel_is_noticed() -> None:
    m = fresh()
    _, handle = m.awakeable()
    m.feed(notification(MessageType.SIGNAL, signal_id=17, failure=(500, "nope nope")))
    assert m.result(handle) == Failure(500, "nope nope")
    assert not m.cancel_received
    m.feed(notification(MessageType.SIGNAL, signal_id=1))
    assert m.cancel_received


def test_eager_state_is_answered_inline() -> None:
    m = fresh(state={"count": b"5"}, partial=False, key="c1")
    assert m.start.key == "c1"
    present = m.get_state("count")
    missing = m.get_state("other")
    assert m.result(present) == b"5" and m.result(missing) is VOID
    m.set_state("count", b"7")
    keys = m.state_keys()
    assert m.result(keys) == ["count"]
    out = messages(m.take_output())
    assert [t for t, _ in out] == [
        MessageType.GET_EAGER_STATE,
        MessageType.GET_EAGER_STATE,
        MessageType.SET_STATE,
        MessageType.GET_EAGER_STATE_KEYS,
    ]
    assert out[0][1].value.content == b"5" and out[1][1].HasField("void")  # type: ignore[attr-defined]


def test_partial_state_reads_lazily_until_clear_all() -> None:
    m = fresh()
    handle = m.get_state("k")
    assert handle == 1 and not m.is_completed(handle)
    m.clear_all_state()
    after = m.get_state("k")
    assert m.result(after) is VOID
    assert [t for t, _ in messages(m.take_output())] == [
        MessageType.GET_LAZY_STATE,
        MessageType.CLEAR_ALL_STATE,
        MessageType.GET_EAGER_STATE,
    ]


def test_promises_and_attach_take_completion_ids() -> None:
    m = fresh()
    assert m.get_promise("approval") == 1
    assert m.complete_promise("approval", b'"boss"') == 2
    assert m.peek_promise("approval") == 3
    assert m.attach_invocation("inv_1x") == 4
    m.cancel_invocation("inv_1y")
    kinds = [t for t, _ in messages(m.take_output())]
    assert kinds[-1] == MessageType.SEND_SIGNAL


def test_terminal_output_failure() -> None:
    m = fresh()
    m.output(Failure(409, "no such order"))
    (t, out), (end, _) = messages(m.take_output())
    assert t == MessageType.OUTPUT and out.failure.code == 409  # type: ignore[attr-defined]
    assert end == MessageType.END


def test_stream_must_start_with_start_and_input() -> None:
    with pytest.raises(ProtocolError):
        Machine(6).feed(input_frame())
    m = Machine(6)
    with pytest.raises(ProtocolError):
        m.feed(start_frame(1) + encode(pb.RunCommandMessage(result_completion_id=1)))
    with pytest.raises(ProtocolError):
        Machine(4)
