"""The PostgreSQL store's synchronous reads: the `Reader` and `Recovery` halves of the storage
interface, over one psycopg connection (the processor's reads happen while it applies commands,
on cache misses: rare; each blocks the event loop for one loopback round trip). A cluster node's
recovery reads cover its own partitions (`_scope`), or those it adopts (`Scoped`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import psycopg

from perdure.protocol.ids import partition_key_of
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import INVOKED, PAUSED, Entry, Invocation, decode_record
from perdure.server.storage.interface import StorageError
from perdure.server.storage.pg_mailbox import READ_SQL

_IN_PARTS = " AND (%s::integer[] IS NULL OR partition = ANY(%s::integer[]))"


class PgReads:
    """Mixed into `PostgresStorage`, which sets `dsn`, `_bits` and `_reader` and says which
    partitions its recovery reads cover (`_scope`)."""

    dsn: str
    _bits: int
    _reader: psycopg.Connection[tuple[Any, ...]] | None

    def _scope(self) -> list[int] | None:
        raise NotImplementedError

    def _connect_reader(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)

    def _id_part(self, raw_id: bytes) -> int:
        return int.from_bytes(raw_id[:2], "big") >> (16 - self._bits)

    def _key_part(self, key: str) -> int:
        return partition_key_of(key) >> (64 - self._bits)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        if self._reader is None or self._reader.closed:
            try:
                self._reader = self._connect_reader()
            except psycopg.Error as exc:
                raise StorageError(f"postgresql: {exc}") from exc
        try:
            return self._reader.execute(sql, params).fetchall()
        except psycopg.Error as exc:
            if self._reader.broken:
                self._reader.close()
            raise StorageError(f"postgresql: {exc}") from exc

    def get_invocation(self, raw_id: bytes) -> Invocation | None:
        rows = self._rows(
            "SELECT record FROM invocation WHERE partition = %s AND id = %s", (self._id_part(raw_id), raw_id)
        )
        return decode_record(raw_id, rows[0][0]) if rows else None

    def get_journal(self, raw_id: bytes) -> list[Entry]:
        rows = self._rows(
            "SELECT type, body, appended_at FROM journal WHERE partition = %s AND id = %s ORDER BY idx",
            (self._id_part(raw_id), raw_id),
        )
        return [Entry(t, bytes(b), a) for t, b, a in rows]

    def get_state(self, service: str, key: str) -> dict[bytes, bytes]:
        rows = self._rows(
            "SELECT skey, value FROM state WHERE partition = %s AND service = %s AND key = %s",
            (self._key_part(key), service, key),
        )
        return {bytes(k): bytes(v) for k, v in rows}

    def get_promise(self, service: str, key: str, name: str) -> bytes | None:
        rows = self._rows(
            "SELECT record FROM promise WHERE partition = %s AND service = %s AND key = %s AND name = %s",
            (self._key_part(key), service, key, name),
        )
        return bytes(rows[0][0]) if rows else None

    def read_mailbox(self, partitions: list[int], limit: int) -> list[tuple[int, int, bytes]]:
        return [(int(p), int(q), bytes(b)) for p, q, b in self._rows(READ_SQL, (partitions, limit))]

    def get_dedup(self, producer: str) -> int | None:
        rows = self._rows("SELECT seq FROM dedup WHERE producer = %s", (producer,))
        return int(rows[0][0]) if rows else None

    def expired(self, now_ms: int, limit: int) -> list[bytes]:
        parts = self._scope()
        rows = self._rows(
            "SELECT id FROM invocation WHERE expires_at IS NOT NULL AND expires_at <= %s "
            "AND (%s::integer[] IS NULL OR partition = ANY(%s::integer[])) LIMIT %s",
            (now_ms, parts, parts, limit),
        )
        return [bytes(r[0]) for r in rows]

    def load_running(self) -> list[Invocation]:
        return self._load_running(self._scope())

    def load_locks(self) -> dict[tuple[str, str], bytes]:
        return self._load_locks(self._scope())

    def load_inbox(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        return self._load_inbox(self._scope())

    def load_timers(self, limit: int) -> list[Timer]:
        return self._load_timers(limit, self._scope())

    def _load_running(self, parts: list[int] | None) -> list[Invocation]:
        running = self._rows(
            "SELECT id, record FROM invocation WHERE status IN (%s, %s)" + _IN_PARTS,
            (INVOKED, PAUSED, parts, parts),
        )
        journals: dict[bytes, list[Entry]] = defaultdict(list)
        for raw, ty, body, at in self._rows(
            "SELECT j.id, j.type, j.body, j.appended_at FROM invocation i "
            "JOIN journal j ON j.partition = i.partition AND j.id = i.id "
            "WHERE i.status IN (%s, %s) AND (%s::integer[] IS NULL OR i.partition = ANY(%s::integer[])) "
            "ORDER BY j.partition, j.id, j.idx",
            (INVOKED, PAUSED, parts, parts),
        ):
            journals[bytes(raw)].append(Entry(ty, bytes(body), at))
        out = []
        for raw, rec in running:
            inv = decode_record(bytes(raw), rec)
            inv.journal = journals.get(bytes(raw), [])
            out.append(inv)
        return out

    def _load_locks(self, parts: list[int] | None) -> dict[tuple[str, str], bytes]:
        rows = self._rows("SELECT service, key, id FROM lock WHERE true" + _IN_PARTS, (parts, parts))
        return {(s, k): bytes(i) for s, k, i in rows}

    def _load_inbox(self, parts: list[int] | None) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        out: dict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
        for s, k, seq, i in self._rows(
            "SELECT service, key, seq, id FROM inbox WHERE true" + _IN_PARTS + " ORDER BY service, key, seq",
            (parts, parts),
        ):
            out[(s, k)].append((seq, bytes(i)))
        return dict(out)

    def _load_timers(self, limit: int, parts: list[int] | None) -> list[Timer]:
        rows = self._rows(
            "SELECT wake_at, id, kind, arg FROM timer WHERE true"
            + _IN_PARTS
            + " ORDER BY wake_at, id, kind, arg LIMIT %s",
            (parts, parts, limit),
        )
        return [Timer(w, bytes(i), k, a) for w, i, k, a in rows]

    def load_limits(
        self,
    ) -> tuple[list[tuple[str, bytes, int]], list[tuple[bytes, int, int, str, str, str | None]]]:
        rules = [
            (p, bytes(rec), tat) for p, rec, tat in self._rows("SELECT pattern, record, tat FROM limit_rule")
        ]
        entries = [
            (bytes(i), seq, running, s, h, k)
            for i, seq, running, s, h, k in self._rows(
                "SELECT id, seq, running, service, handler, key FROM limit_entry ORDER BY seq"
            )
        ]
        return rules, entries

    def load_schedules(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._rows("SELECT record FROM schedule ORDER BY name")]


class Scoped:
    """The recovery reads of some partitions only (a cluster node adopting them)."""

    def __init__(self, store: PgReads, partitions: list[int]) -> None:
        self._store = store
        self._parts = partitions

    def load_running(self) -> list[Invocation]:
        return self._store._load_running(self._parts)

    def load_locks(self) -> dict[tuple[str, str], bytes]:
        return self._store._load_locks(self._parts)

    def load_inbox(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        return self._store._load_inbox(self._parts)

    def load_timers(self, limit: int) -> list[Timer]:
        return self._store._load_timers(limit, self._parts)

    def load_limits(
        self,
    ) -> tuple[list[tuple[str, bytes, int]], list[tuple[bytes, int, int, str, str, str | None]]]:
        return [], []  # cluster-wide; loaded once, at the processor's start

    def load_schedules(self) -> list[bytes]:
        return self._store.load_schedules()  # every one, fresh: the processor keeps its partitions
