"""In-memory backend with the same interface as SQLite: used by the seeded
simulation, where a crash drops the processor and keeps only what this store
committed. `fail_next_commit` injects storage faults."""

from __future__ import annotations

import copy
from collections import defaultdict
from typing import Any

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import (
    INVOKED,
    PAUSED,
    Entry,
    Invocation,
    decode_record,
    record_expires_at_ms,
)
from perdure.server.storage.interface import StorageError


class MemoryStorage:
    def __init__(self) -> None:
        self.invocations: dict[bytes, bytes] = {}
        self.journal: dict[bytes, dict[int, tuple[int, bytes, int]]] = defaultdict(dict)
        self.state: dict[tuple[str, str], dict[bytes, bytes]] = defaultdict(dict)
        self.timers: set[Timer] = set()
        self.locks: dict[tuple[str, str], bytes] = {}
        self.inbox: dict[tuple[str, str], dict[int, bytes]] = defaultdict(dict)
        self.promises: dict[tuple[str, str, str], bytes] = {}
        self.meta: dict[str, bytes] = {}
        self.rules: dict[str, list[Any]] = {}  # pattern -> [record, tat]
        self.limit_entries: dict[bytes, tuple[int, int, str, str, str | None]] = {}
        self.schedules: dict[str, bytes] = {}
        self.dedup: dict[str, int] = {}
        # The partition mailbox: partition -> seq -> body (rows for partitions another processor
        # owns; a row applied twice is a bug: deleting a row that is gone raises).
        self.mailbox: dict[int, dict[int, bytes]] = defaultdict(dict)
        self.mail_seq = 0
        self.fail_next_commit = False
        self.commits = 0

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def commit_batch(self, batch: WriteBatch) -> None:
        self.commit_sync(batch)

    def commit_sync(self, b: WriteBatch) -> None:
        """Apply all of the batch or nothing (a failed commit changes nothing)."""
        if self.fail_next_commit:
            self.fail_next_commit = False
            raise StorageError("injected commit failure")
        applied: set[tuple[int, int]] = set()  # checked first: a failed commit changes nothing
        for partition, seq in b.mail_done:
            if seq not in self.mailbox.get(partition, {}) or (partition, seq) in applied:
                raise StorageError(f"mailbox row {seq} of partition {partition} applied twice")
            applied.add((partition, seq))
        for raw in {j[0] for j in b.journal}:  # as SQLite's journal, keyed by its record's row
            if b.invocations.get(raw, self.invocations.get(raw)) is None:
                raise StorageError(f"journal rows of {raw.hex()} without its record")
        for raw, rec in b.invocations.items():
            if rec is None:
                self.invocations.pop(raw, None)
                self.journal.pop(raw, None)
            else:
                self.invocations[raw] = rec
        for raw in b.journal_delete:
            self.journal.pop(raw, None)
        for raw, idx, ty, body, ts in b.journal:
            j = self.journal[raw]
            if idx in j:
                raise StorageError(f"journal index {idx} of {raw.hex()} written twice")
            j[idx] = (ty, body, ts)
        self.timers.difference_update(b.timers_delete)
        self.timers.update(b.timers_add)
        for kind, args in b.ops:
            self._apply_op(kind, args)
        for partition, seq in b.mail_done:
            del self.mailbox[partition][seq]
        for partition, body in b.outbox:
            self.mail_seq += 1
            self.mailbox[partition][self.mail_seq] = body
        self.commits += 1

    def _apply_op(self, kind: Op, a: tuple[Any, ...]) -> None:
        if kind is Op.STATE_SET:
            self.state[(a[0], a[1])][a[2]] = a[3]
        elif kind is Op.STATE_DELETE:
            self.state[(a[0], a[1])].pop(a[2], None)
        elif kind is Op.STATE_CLEAR:
            self.state.pop((a[0], a[1]), None)
        elif kind is Op.LOCK_SET:
            self.locks[(a[0], a[1])] = a[2]
        elif kind is Op.LOCK_DELETE:
            self.locks.pop((a[0], a[1]), None)
        elif kind is Op.INBOX_ADD:
            self.inbox[(a[0], a[1])][a[2]] = a[3]
        elif kind is Op.INBOX_DELETE:
            self.inbox[(a[0], a[1])].pop(a[2], None)
        elif kind is Op.PROMISE_PUT:
            self.promises[(a[0], a[1], a[2])] = a[3]
        elif kind is Op.RULE_PUT:
            self.rules.setdefault(a[0], [a[1], 0])[0] = a[1]
        elif kind is Op.RULE_DELETE:
            self.rules.pop(a[0], None)
        elif kind is Op.RULE_TAT:
            if a[0] in self.rules:
                self.rules[a[0]][1] = a[1]
        elif kind is Op.LIMIT_PUT:
            self.limit_entries[a[0]] = (a[1], a[2], a[3], a[4], a[5])
        elif kind is Op.LIMIT_DELETE:
            self.limit_entries.pop(a[0], None)
        elif kind is Op.SCHEDULE_PUT:
            self.schedules[a[0]] = a[1]
        elif kind is Op.SCHEDULE_DELETE:
            self.schedules.pop(a[0], None)
        elif kind is Op.DEDUP_SET:
            self.dedup[a[0]] = a[1]
        elif kind is Op.PROMISE_CLEAR:
            for k in [k for k in self.promises if k[0] == a[0] and k[1] == a[1]]:
                del self.promises[k]

    async def get_meta(self, key: str) -> bytes | None:
        return self.meta.get(key)

    async def put_meta(self, key: str, value: bytes) -> None:
        self.meta[key] = value

    def get_invocation(self, raw_id: bytes) -> Invocation | None:
        rec = self.invocations.get(raw_id)
        return None if rec is None else decode_record(raw_id, rec)

    def get_journal(self, raw_id: bytes) -> list[Entry]:
        j = self.journal.get(raw_id, {})
        return [Entry(*j[i]) for i in sorted(j)]

    def get_state(self, service: str, key: str) -> dict[bytes, bytes]:
        return dict(self.state.get((service, key), {}))

    def get_promise(self, service: str, key: str, name: str) -> bytes | None:
        return self.promises.get((service, key, name))

    def read_mailbox(self, partitions: list[int], limit: int) -> list[tuple[int, int, bytes]]:
        rows = [(p, seq, body) for p in partitions for seq, body in self.mailbox.get(p, {}).items()]
        return sorted(rows, key=lambda r: r[1])[:limit]

    async def post_mail(self, partition: int, body: bytes) -> int:
        self.mail_seq += 1
        self.mailbox[partition][self.mail_seq] = body
        return self.mail_seq

    async def mail_pending(self, partition: int, seq: int) -> bool:
        return seq in self.mailbox.get(partition, {})

    def get_dedup(self, producer: str) -> int | None:
        return self.dedup.get(producer)

    def expired(self, now_ms: int, limit: int) -> list[bytes]:
        out = []
        for raw, rec in self.invocations.items():
            expires = record_expires_at_ms(decode_record(raw, rec))
            if expires is not None and expires <= now_ms:
                out.append(raw)
        return out[:limit]

    def load_running(self) -> list[Invocation]:
        out = []
        for raw, rec in self.invocations.items():
            inv = decode_record(raw, rec)
            if inv.status in (INVOKED, PAUSED):
                inv.journal = self.get_journal(raw)
                out.append(inv)
        return out

    def load_locks(self) -> dict[tuple[str, str], bytes]:
        return dict(self.locks)

    def load_inbox(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        return {k: sorted(v.items()) for k, v in self.inbox.items() if v}

    def load_limits(
        self,
    ) -> tuple[list[tuple[str, bytes, int]], list[tuple[bytes, int, int, str, str, str | None]]]:
        rules = [(p, rec, tat) for p, (rec, tat) in self.rules.items()]
        entries = sorted(((raw, *e) for raw, e in self.limit_entries.items()), key=lambda e: e[1])
        return rules, entries

    def load_schedules(self) -> list[bytes]:
        return [self.schedules[name] for name in sorted(self.schedules)]

    def load_timers(self, limit: int) -> list[Timer]:
        return sorted(self.timers)[:limit]

    def snapshot(self) -> MemoryStorage:
        return copy.deepcopy(self)
