"""The indexed columns the processor hands the store agree with the record they index."""

from __future__ import annotations

import sqlite3

import orjson

from perdure.protocol.ids import InvocationId
from perdure.server.processor.batch import index_of
from perdure.server.processor.model import COMPLETED, INVOKED, Invocation, Outcome, Target, encode_record
from perdure.server.storage.sqlite import _EXPIRES_AT_SQL

# What the store derives from the record itself when a batch carries no index.
FROM_RECORD = (
    "SELECT json_extract(?2, '$.status'), json_extract(?2, '$.s'), json_extract(?2, '$.k'), "
    f"json_extract(?2, '$.c'), {_EXPIRES_AT_SQL}"
)


def invocation(status: str, key: str | None, **kw: object) -> Invocation:
    raw = bytes(range(24))
    target = Target("Svc", "run", key, "VIRTUAL_OBJECT" if key else "SERVICE", "EXCLUSIVE")
    return Invocation(InvocationId.from_raw(raw), target, status, 1_000, 2_000, **kw)  # type: ignore[arg-type]


def test_index_matches_the_record_for_running_and_completed_invocations() -> None:
    conn = sqlite3.connect(":memory:")
    cases = [
        invocation(INVOKED, None),
        invocation(INVOKED, "k1"),
        invocation(
            COMPLETED,
            "k3",
            completed_at_ms=5_000,
            completion_retention_ms=86_400_000,
            journal_retention_ms=1_000,
            journal_length=3,
        ),
        invocation(
            COMPLETED,
            "k2",
            completed_at_ms=5_000,
            completion_retention_ms=86_400_000,
            outcome=Outcome(value=b"x" * 1000),
        ),
    ]
    for inv in cases:
        rec = encode_record(inv)
        i = index_of(inv)
        assert conn.execute(FROM_RECORD, (None, rec)).fetchone() == (
            i.status,
            i.service,
            i.key,
            i.created_at_ms,
            i.expires_at_ms,
        ), orjson.loads(rec)
    conn.close()
