"""The partition mailbox in the processor (sans-IO, over one memory store): two processors, each
owning one of two partitions, as two cluster nodes would. A handler's call and sends to a key of
the other partition become outbox rows of the caller's batch (nothing of the other partition is
written), the owner applies them in the order sent and deletes them in the same batch, the
result comes back the same way, a row read twice in one batch is applied once, and a partition
adopted later picks up the rows that waited for it."""

from __future__ import annotations

from typing import Any

import pytest

from perdure.protocol import messages_pb2 as pb
from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.protocol.ids import InvocationId, partition_key_of
from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import CheckMailbox, Invoke, InvokeRequest, SdkMessage
from perdure.server.processor.effects import Effect, Reply, SendToAttempt, StartAttempt
from perdure.server.processor.locality import Locality
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor
from perdure.server.storage.interface import StorageError
from perdure.server.storage.memory import MemoryStorage
from tests.unit.schema_fixture import SCHEMA

SENDS = 5


def _key_in(partition: int, prefix: str) -> str:
    return next(f"{prefix}{i}" for i in range(1000) if partition_key_of(f"{prefix}{i}") >> 63 == partition)


def _node(st: MemoryStorage, owned: set[int]) -> Processor:
    p = Processor(st, SCHEMA, locality=Locality(1, owned))
    p.recover(st, 0)
    _commit(p, st)
    return p


def _commit(p: Processor, st: MemoryStorage) -> tuple[WriteBatch, list[Effect]]:
    batch, effects = p.take()
    st.commit_sync(batch)
    p.committed()
    return batch, effects


def _sdk(p: Processor, start: StartAttempt, msg_type: int, msg: Any) -> None:
    p.apply(SdkMessage(start.invocation, start.attempt, msg_type, msg.SerializeToString()), 0)


def _start(p: Processor, st: MemoryStorage, key: str) -> StartAttempt:
    target = Target("Counter", "add", key, "virtual_object", "exclusive")
    p.apply(Invoke(InvokeRequest(target, b"0"), 1, "send"), 0)
    _, effects = _commit(p, st)
    return next(e for e in effects if isinstance(e, StartAttempt))


def _add(key: str, parameter: bytes, id_idx: int) -> dict[str, Any]:
    """The fields of a call or send to `Counter/{key}/add`."""
    return {
        "service_name": "Counter",
        "handler_name": "add",
        "key": key,
        "parameter": parameter,
        "invocation_id_notification_idx": id_idx,
    }


def _end(p: Processor, start: StartAttempt, value: bytes) -> None:
    _sdk(p, start, T.OUTPUT, pb.OutputCommandMessage(value=pb.Value(content=value)))
    _sdk(p, start, T.END, pb.EndMessage())


def test_calls_and_sends_to_another_partition_go_through_the_mailbox_in_order() -> None:
    st = MemoryStorage()
    a, b = _node(st, {0}), _node(st, {1})
    here, there = _key_in(0, "a"), _key_in(1, "b")
    caller = _start(a, st, here)
    _sdk(a, caller, T.CALL, pb.CallCommandMessage(**_add(there, b"call", 1), result_completion_id=2))
    for i in range(SENDS):
        send = pb.OneWayCallCommandMessage(**_add(there, f"send-{i}".encode(), 3 + i))
        _sdk(a, caller, T.ONE_WAY_CALL, send)
    batch, effects = _commit(a, st)
    assert [p for p, _ in batch.outbox] == [1] * (1 + SENDS)
    ids = [
        InvocationId.parse(decode(e.type, e.body).invocation_id).raw
        for e in effects
        if isinstance(e, SendToAttempt) and e.type == T.CALL_INVOCATION_ID_COMPLETION
    ]
    assert len(ids) == 1 + SENDS and not any(i in st.invocations for i in ids)  # none written there

    # The owner applies every row in the order sent and deletes them in the same batch.
    b.apply(CheckMailbox(7), 0)
    b.apply(CheckMailbox(8), 0)  # read again before the delete committed: applied once
    batch, effects = _commit(b, st)
    assert sorted(batch.mail_done) == sorted((1, seq) for seq in range(1, 2 + SENDS))
    assert [e.data for e in effects if isinstance(e, Reply)] == [1 + SENDS, 1 + SENDS]
    assert not st.mailbox[1] and all(i in st.invocations for i in ids)
    callee = next(e for e in effects if isinstance(e, StartAttempt))
    assert callee.invocation == ids[0]
    assert [raw for _, raw in st.load_inbox()[("Counter", there)]] == ids[1:]  # queued in send order

    # The result goes back through the mailbox into the caller's journal and its attempt.
    _end(b, callee, b"42")
    batch, _ = _commit(b, st)
    assert [p for p, _ in batch.outbox] == [0]
    a.apply(CheckMailbox(9), 0)
    _, effects = _commit(a, st)
    back = [e for e in effects if isinstance(e, SendToAttempt) and e.type == T.CALL_COMPLETION]
    assert len(back) == 1 and decode(T.CALL_COMPLETION, back[0].body).value.content == b"42"
    assert not st.mailbox[0]


def test_an_adopted_partition_applies_the_rows_that_waited_for_it() -> None:
    st = MemoryStorage()
    a = _node(st, {0})
    nobody_yet = _key_in(1, "c")
    caller = _start(a, st, _key_in(0, "a"))
    _sdk(a, caller, T.ONE_WAY_CALL, pb.OneWayCallCommandMessage(**_add(nobody_yet, b"x", 1)))
    _commit(a, st)
    assert len(st.mailbox[1]) == 1
    late = _node(st, set())
    late.adopt_partitions({1}, st, 0)
    batch, effects = _commit(late, st)
    assert len(batch.mail_done) == 1 and not st.mailbox[1]
    assert any(isinstance(e, StartAttempt) for e in effects)


def test_the_memory_store_refuses_a_row_applied_twice() -> None:
    st = MemoryStorage()
    seq = st.mail_seq + 1
    st.commit_sync(WriteBatch(outbox=[(1, b"{}")]))
    st.commit_sync(WriteBatch(mail_done=[(1, seq)]))
    with pytest.raises(StorageError, match="applied twice"):
        st.commit_sync(WriteBatch(mail_done=[(1, seq)]))
    st.commit_sync(WriteBatch(outbox=[(1, b"{}")]))
    with pytest.raises(StorageError, match="applied twice"):  # twice in one batch
        st.commit_sync(WriteBatch(mail_done=[(1, seq + 1), (1, seq + 1)]))
    assert st.mailbox[1]  # the failed commit changed nothing
