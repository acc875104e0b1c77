"""A processor `WriteBatch` as the array arguments of `perdure_commit` (the
PostgreSQL write door, migrations/0002_commit.sql): one statement per batch.

Keyed operations keep their order (parallel arrays, applied by index); their
partition comes from the key's partition key, computed here because the hash
(blake2b) is not one PostgreSQL has."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from perdure.protocol.ids import partition_key_of
from perdure.server.processor.batch import Op, WriteBatch

_COMMIT_ARGS = 33  # owner, epochs, seq, bits and the arrays of `commit_args`
COMMIT_SQL = "SELECT perdure_commit(" + ", ".join(f"${i}" for i in range(1, _COMMIT_ARGS + 1)) + ")"
_U64_SIGN = 1 << 63


def signed_pk(key: str) -> int:
    """The key's 64-bit partition key as PostgreSQL's signed bigint."""
    pk = partition_key_of(key)
    return pk - (1 << 64) if pk >= _U64_SIGN else pk


_Columns = tuple[bytes | None, bytes | None, int | None, str | None]  # op_a, op_b, op_seq, op_name
_NONE: _Columns = (None, None, None, None)
_COLUMNS: dict[Op, Callable[[tuple[Any, ...]], _Columns]] = {
    Op.STATE_SET: lambda x: (x[2], x[3], None, None),
    Op.STATE_DELETE: lambda x: (x[2], None, None, None),
    Op.STATE_CLEAR: lambda x: _NONE,
    Op.LOCK_SET: lambda x: (x[2], None, None, None),
    Op.LOCK_DELETE: lambda x: _NONE,
    Op.INBOX_ADD: lambda x: (x[3], None, x[2], None),
    Op.INBOX_DELETE: lambda x: (None, None, x[2], None),
    Op.PROMISE_PUT: lambda x: (x[3], None, None, x[2]),
    Op.PROMISE_CLEAR: lambda x: _NONE,
}


# Rules, limit entries and schedules: global tables written by their own statements in the
# batch's transaction (perdure_commit handles the keyed, partitioned operations).
_EXTRA_SQL: dict[Op, str] = {
    Op.RULE_PUT: "INSERT INTO limit_rule (pattern, record) VALUES ($1, $2) "
    "ON CONFLICT (pattern) DO UPDATE SET record = excluded.record",
    Op.RULE_DELETE: "DELETE FROM limit_rule WHERE pattern = $1",
    Op.RULE_TAT: "UPDATE limit_rule SET tat = $2 WHERE pattern = $1",
    Op.LIMIT_PUT: "INSERT INTO limit_entry (id, seq, running, service, handler, key) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, "
    "running = excluded.running, service = excluded.service, handler = excluded.handler, key = excluded.key",
    Op.LIMIT_DELETE: "DELETE FROM limit_entry WHERE id = $1",
    Op.SCHEDULE_PUT: "INSERT INTO schedule (name, record) VALUES ($1, $2) "
    "ON CONFLICT (name) DO UPDATE SET record = excluded.record",
    Op.SCHEDULE_DELETE: "DELETE FROM schedule WHERE name = $1",
    # A Kafka record stream's high-water mark, in the transaction of the invocation it dedups.
    Op.DEDUP_SET: "INSERT INTO dedup (producer, seq) VALUES ($1, $2) "
    "ON CONFLICT (producer) DO UPDATE SET seq = excluded.seq",
}
GLOBAL_OPS = frozenset(_EXTRA_SQL)  # not fenced by a key's partition (perdure_commit skips them)


def batch_ids(b: WriteBatch) -> Iterator[bytes]:
    """The invocation ids whose partitions the batch writes (records, journals, timers)."""
    return itertools.chain(
        b.invocations,
        b.journal_delete,
        (e[0] for e in b.journal),
        (t.invocation for t in b.timers_delete),
        (t.invocation for t in b.timers_add),
    )


def anchor_partition(b: WriteBatch, bits: int) -> int | None:
    """One partition whose lease row this batch's fence writes (`last_batch = seq`): the row an
    unknown commit outcome is read back from. None when the batch writes only global tables."""
    raw = next(batch_ids(b), None)
    if raw is not None:
        return int.from_bytes(raw[:2], "big") >> (16 - bits)
    for kind, args in b.ops:
        if kind not in _EXTRA_SQL:
            return partition_key_of(args[1]) >> (64 - bits)
    return None


def extra_statements(b: WriteBatch) -> list[tuple[str, tuple[Any, ...]]]:
    """The batch's rule, limit and schedule operations as (SQL, arguments), in order."""
    return [(_EXTRA_SQL[kind], args) for kind, args in b.ops if kind in _EXTRA_SQL]


def commit_args(b: WriteBatch) -> tuple[Any, ...]:
    """The batch's arguments after (owner, epochs, seq, bits)."""
    inv_ids = list(b.invocations)
    inv_recs = list(b.invocations.values())
    # The indexed columns (migration 9): PostgreSQL parses a record only when they are missing.
    index = [b.index.get(raw) for raw in inv_ids]
    inv_status = [None if i is None else i.status for i in index]
    inv_service = [None if i is None else i.service for i in index]
    inv_key = [None if i is None else i.key for i in index]
    inv_created = [None if i is None else i.created_at_ms for i in index]
    inv_expires = [None if i is None else i.expires_at_ms for i in index]
    j = b.journal
    td = b.timers_delete
    ta = b.timers_add
    kinds: list[int] = []
    services: list[str] = []
    keys: list[str] = []
    pks: list[int] = []
    a: list[bytes | None] = []
    bv: list[bytes | None] = []
    seqs: list[int | None] = []
    names: list[str | None] = []
    pk_of: dict[str, int] = {}
    for kind, args in b.ops:
        if kind in _EXTRA_SQL:
            continue
        key = args[1]
        pk = pk_of.get(key)
        if pk is None:
            pk = pk_of[key] = signed_pk(key)
        kinds.append(int(kind))
        services.append(args[0])
        keys.append(key)
        pks.append(pk)
        col_a, col_b, seq, name = _COLUMNS[kind](args)
        a.append(col_a)
        bv.append(col_b)
        seqs.append(seq)
        names.append(name)
    return (
        inv_ids,
        inv_recs,
        inv_status,
        inv_service,
        inv_key,
        inv_created,
        inv_expires,
        list(b.journal_delete),
        [e[0] for e in j],
        [e[1] for e in j],
        [e[2] for e in j],
        [e[3] for e in j],
        [e[4] for e in j],
        [t.wake_at_ms for t in td],
        [t.invocation for t in td],
        [t.kind for t in td],
        [t.arg for t in td],
        [t.wake_at_ms for t in ta],
        [t.invocation for t in ta],
        [t.kind for t in ta],
        [t.arg for t in ta],
        kinds,
        services,
        keys,
        pks,
        a,
        bv,
        seqs,
        names,
    )
