"""On a cluster a schedule lives in its name's partition: a schedule of an object key in another
partition is refused (422, saying what to do instead), one whose key shares the name's partition
is taken and its tick's invocation created there (sans-IO, over the memory store)."""

from __future__ import annotations

from perdure.server.processor.commands import ChangeSchedule
from perdure.server.processor.effects import Reply
from perdure.server.processor.locality import Locality
from perdure.server.processor.processor import Processor
from perdure.server.processor.schedules import Schedule, timer_id
from perdure.server.storage.memory import MemoryStorage
from tests.unit.schema_fixture import SCHEMA
from tests.unit.test_mailbox import _commit, _key_in

HOUR_MS = 3_600_000


def _name_in(loc: Locality, partition: int) -> str:
    return next(f"job{i}" for i in range(1000) if loc.of_id(timer_id(f"job{i}")) == partition)


def _put(p: Processor, st: MemoryStorage, name: str, key: str, token: int) -> Reply:
    s = Schedule(name=name, service="Counter", handler="add", key=key, body=b"1", every_ms=HOUR_MS)
    p.apply(ChangeSchedule("put", name, s, token), 0)
    _, effects = _commit(p, st)
    return next(e for e in effects if isinstance(e, Reply) and e.token == token)


def test_a_keyed_schedule_is_taken_only_in_its_keys_partition() -> None:
    st = MemoryStorage()
    loc = Locality(1, {0, 1})  # one node owning both partitions of a 2-partition cluster
    p = Processor(st, SCHEMA, locality=loc)
    p.recover(st, 0)
    _commit(p, st)
    name = _name_in(loc, 0)
    refused = _put(p, st, name, _key_in(1, "k"), 1)
    assert refused.code == 422
    assert "own partition" in (refused.message or "") and "service handler" in (refused.message or "")
    assert st.load_schedules() == []  # nothing of it was stored
    taken = _put(p, st, name, _key_in(0, "k"), 2)
    assert taken.code == 201
    assert len(st.load_schedules()) == 1


def test_on_one_node_any_key_is_taken() -> None:
    st = MemoryStorage()
    p = Processor(st, SCHEMA)
    p.recover(st, 0)
    _commit(p, st)
    loc = Locality(1)
    assert _put(p, st, _name_in(loc, 0), _key_in(1, "k"), 1).code == 201
