"""The processor's state cache is bounded: old keys are dropped after a commit and read back
from the store unchanged."""

from __future__ import annotations

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.server.processor.commands import Invoke, InvokeRequest, SdkMessage
from perdure.server.processor.effects import StartAttempt
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor, ProcessorConfig
from perdure.server.storage.memory import MemoryStorage
from tests.unit.schema_fixture import SCHEMA


def test_state_cache_stays_bounded_and_evicted_keys_read_back_from_storage() -> None:
    st = MemoryStorage()
    p = Processor(st, SCHEMA, ProcessorConfig(cached_keys_max=8))
    p.recover(st, 0)
    for i in range(40):
        key = f"k{i}"
        p.apply(
            Invoke(
                InvokeRequest(Target("Counter", "add", key, "virtual_object", "exclusive"), b"1"), i, "send"
            ),
            0,
        )
        batch, effects = p.take()
        st.commit_sync(batch)
        p.committed()
        start = next(e for e in effects if isinstance(e, StartAttempt))
        assert start.state == () or start.state == ((b"count", f"{i}".encode()),)
        set_msg = pb.SetStateCommandMessage(key=b"count", value=pb.Value(content=f"{i}".encode()))
        for t, m in (
            (T.SET_STATE, set_msg),
            (T.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b"1"))),
            (T.END, pb.EndMessage()),
        ):
            p.apply(SdkMessage(start.invocation, start.attempt, t, m.SerializeToString()), 0)
        batch, _ = p.take()
        st.commit_sync(batch)
        p.committed()
        assert len(p._state) <= 8
    # A key dropped from the cache long ago is read back from the store with its value.
    p.apply(
        Invoke(
            InvokeRequest(Target("Counter", "add", "k0", "virtual_object", "exclusive"), b"1"), 99, "send"
        ),
        0,
    )
    _, effects = p.take()
    start = next(e for e in effects if isinstance(e, StartAttempt))
    assert start.state == ((b"count", b"0"),)


def test_ten_thousand_queued_calls_on_a_hot_key_are_not_kept_in_memory() -> None:
    """Queued calls wait in the durable inbox: memory holds the running invocation's record
    and only the ids of the queued ones, which start in arrival order."""
    st = MemoryStorage()
    p = Processor(st, SCHEMA)
    p.recover(st, 0)
    target = Target("Counter", "add", "hot", "virtual_object", "exclusive")
    starts: list[StartAttempt] = []
    for i in range(10_000):
        p.apply(Invoke(InvokeRequest(target, str(i).encode()), i, "send"), 0)
        if i % 1000 == 999:
            batch, effects = p.take()
            st.commit_sync(batch)
            p.committed()
            starts += [e for e in effects if isinstance(e, StartAttempt)]
    assert len(starts) == 1  # one runs, the rest wait
    assert len(p.resident()) == 1
    assert sum(len(q) for q in st.inbox.values()) == 9_999
    first = starts[0]
    for t, m in (
        (T.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b"1"))),
        (T.END, pb.EndMessage()),
    ):
        p.apply(SdkMessage(first.invocation, first.attempt, t, m.SerializeToString()), 0)
    batch, effects = p.take()
    st.commit_sync(batch)
    p.committed()
    (nxt,) = [e for e in effects if isinstance(e, StartAttempt)]
    assert decode(T.INPUT, nxt.journal[0].body).value.content == b"1"  # the second call, in arrival order
    assert len(p.resident()) == 1
