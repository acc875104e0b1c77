"""Regression tests for the batch-order bug the simulation found (fixed in 7aa6f1e).

`WriteBatch` used to keep sets and deletes of locks, inbox rows and state in
separate lists that the stores applied deletes first, so within one batch a
lock set then released, an inbox row added then consumed, or a state key set
then cleared survived in storage; after a restart the stale lock blocked its
key forever. Simulation seeds 27 and 47 (before the fix) hit it."""

from __future__ import annotations

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.ids import InvocationId
from perdure.server.processor.commands import Invoke, InvokeRequest, SdkMessage, Terminate
from perdure.server.processor.effects import Effect, Reply, StartAttempt
from perdure.server.processor.processor import Processor
from perdure.server.storage.memory import MemoryStorage
from perdure.testing.simulation.schema import SIM_SCHEMA
from perdure.testing.simulation.world import EPOCH_MS, counter

NOW = EPOCH_MS


def restart(st: MemoryStorage) -> tuple[Processor, list[Effect]]:
    p = Processor(st, SIM_SCHEMA)
    p.recover(st, NOW)
    return p, commit(p, st)


def commit(p: Processor, st: MemoryStorage) -> list[Effect]:
    batch, effects = p.take()
    st.commit_sync(batch)
    p.committed()
    return effects


def add(p: Processor, token: int) -> None:
    p.apply(Invoke(InvokeRequest(counter("add", "k"), f"c{token}|".encode()), token, "send"), NOW)


def start_of(effects: list[Effect]) -> StartAttempt:
    (start,) = [e for e in effects if isinstance(e, StartAttempt)]
    return start


def sdk(p: Processor, s: StartAttempt, msg_type: int, msg: object) -> None:
    p.apply(SdkMessage(s.invocation, s.attempt, msg_type, msg.SerializeToString()), NOW)  # type: ignore[attr-defined]


def holder() -> tuple[MemoryStorage, Processor, StartAttempt]:
    """A store and processor where one Counter/k add holds the lock."""
    st = MemoryStorage()
    p, _ = restart(st)
    add(p, 1)
    return st, p, start_of(commit(p, st))


def finish(p: Processor, s: StartAttempt) -> None:
    sdk(p, s, T.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=b"1")))
    sdk(p, s, T.END, pb.EndMessage())


def test_state_set_then_cleared_in_one_batch_is_cleared_in_storage() -> None:
    st, p, a = holder()
    sdk(p, a, T.SET_STATE, pb.SetStateCommandMessage(key=b"tmp", value=pb.Value(content=b"x")))
    sdk(p, a, T.CLEAR_STATE, pb.ClearStateCommandMessage(key=b"tmp"))
    commit(p, st)
    assert b"tmp" not in st.get_state("Counter", "k")


def test_inbox_row_added_and_consumed_in_one_batch_leaves_no_row() -> None:
    st, p, a = holder()
    add(p, 2)  # inboxed behind a ...
    finish(p, a)  # ... and dequeued in the same batch
    assert isinstance(start_of(commit(p, st)), StartAttempt)
    assert not any(st.inbox.values()), dict(st.inbox)


def test_lock_taken_and_released_in_one_batch_does_not_block_the_key_after_restart() -> None:
    st, p, a = holder()
    add(p, 2)
    (accepted,) = [e for e in commit(p, st) if isinstance(e, Reply)]
    assert accepted.invocation_id is not None
    finish(p, a)  # the lock passes to the inboxed invocation ...
    p.apply(Terminate(InvocationId.parse(accepted.invocation_id).raw, "kill", 99), NOW)  # ... which is killed
    commit(p, st)
    assert st.locks == {}, "a completed invocation still holds Counter/k"
    p, _ = restart(st)
    add(p, 3)
    assert isinstance(start_of(commit(p, st)), StartAttempt), "Counter/k stays locked after a restart"
