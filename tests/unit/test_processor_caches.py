"""The processor's state cache is bounded: old keys are dropped after a commit and read back
from the store unchanged."""

from __future__ import annotations

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
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
