"""Kafka records through the processor: one invocation per (producer, offset), the high-water mark
written in the same batch as the invocation, so a redelivery is dropped before and after a restart
and a lost (uncommitted) batch is ingested again."""

from __future__ import annotations

from perdure.server.processor.commands import Ingest, InvokeRequest
from perdure.server.processor.effects import Reply
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor
from perdure.server.storage.memory import MemoryStorage
from tests.unit.schema_fixture import SCHEMA

TARGET = Target("Counter", "add", "k1", "virtual_object", "exclusive")


def _ingest(p: Processor, st: MemoryStorage, offsets: list[int], *, commit: bool = True) -> list[Reply]:
    for off in offsets:
        p.apply(Ingest(InvokeRequest(TARGET, b"1"), "sub/p0", off, "sub_1x", off), 0)
    batch, effects = p.take()
    if commit:
        st.commit_sync(batch)
        p.committed()
    return [e for e in effects if isinstance(e, Reply)]


def _fresh(st: MemoryStorage) -> Processor:
    p = Processor(st, SCHEMA)
    p.recover(st, 0)
    p.take()
    return p


def test_each_offset_becomes_one_invocation_and_redeliveries_are_dropped() -> None:
    st = MemoryStorage()
    p = _fresh(st)
    replies = _ingest(p, st, [0, 1, 2, 1, 2])
    assert [r.status for r in replies] == ["Accepted"] * 3 + ["PreviouslyAccepted"] * 2
    assert len(st.invocations) == 3
    assert st.dedup == {"sub/p0": 2}
    by = {r.invocation_id for r in replies if r.status == "Accepted"}
    assert len(by) == 3
    # After a restart the mark comes from the store: a replay from offset 0 adds nothing.
    p = _fresh(st)
    assert [r.status for r in _ingest(p, st, [0, 1, 2, 3])] == ["PreviouslyAccepted"] * 3 + ["Accepted"]
    assert len(st.invocations) == 4


def test_a_batch_that_never_committed_is_ingested_again() -> None:
    st = MemoryStorage()
    p = _fresh(st)
    _ingest(p, st, [0, 1])
    _ingest(p, st, [2, 3], commit=False)  # the crash: memory ahead of the store, dropped
    p = _fresh(st)
    assert [r.status for r in _ingest(p, st, [2, 3])] == ["Accepted", "Accepted"]
    assert len(st.invocations) == 4 and st.dedup == {"sub/p0": 3}


def test_records_are_marked_as_invoked_by_their_subscription() -> None:
    st = MemoryStorage()
    p = _fresh(st)
    _ingest(p, st, [7])
    inv = p._get(next(iter(st.invocations)))
    assert inv is not None
    assert (inv.invoked_by, inv.invoked_by_id) == ("subscription", "sub_1x")
