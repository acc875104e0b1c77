"""PostgreSQL backend: the same interface as SQLite, over a database that may be
shared by several nodes later (scale-out). PostgreSQL is the only source of truth.

Writes: every `commit_batch` is ONE statement, `SELECT perdure_commit(...)`, on
an asyncpg pool in autocommit mode, so one round trip and one transaction per
batch. With PostgreSQL's default `synchronous_commit=on` the WAL is flushed
before the statement returns: the batch is durable when the call returns.
The transaction first writes the lease row of every partition it touches,
conditionally on this node's owner name and epoch (the fence); a lost lease
fails the whole batch and nothing of it is acknowledged.

Reads the processor makes while applying commands are synchronous (the
interface says so: they are rare, on cache misses) and go over one psycopg
connection; they block the event loop for one loopback round trip.

Single node: at open the node takes every partition's lease (epoch + 1), which
also fences any older process still writing to this database. Leases expire on
the database clock (`now() + ttl`); `keep_leases` renews all of them in one
statement every renewal interval and raises `LeaseLost` when a partition's
lease is gone (another node took it): the node stops acting for it. Between
renewals the node also stops committing at a local monotonic deadline (the
renewal's send time + ttl - margin), so a paused node cannot act on a lease it
may have lost."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import defaultdict
from typing import Any

import asyncpg
import psycopg

from perdure.protocol.ids import partition_key_of
from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import Timer
from perdure.server.processor.model import INVOKED, PAUSED, Entry, Invocation, decode_record
from perdure.server.storage.interface import StorageError
from perdure.server.storage.pg_batch import COMMIT_SQL, commit_args, extra_statements
from perdure.server.storage.pg_schema import migrate

log = logging.getLogger("perdure.storage.postgres")

FENCED_SQLSTATE = "PF001"
POOL_SIZE_DEFAULT = 8
LEASE_TTL_S_DEFAULT = 6.0
LEASE_MARGIN_S = 1.0  # the local deadline runs out this long before the database's expiry

_RENEW_SQL = (
    "UPDATE partition_lease l SET expires_at = now() + make_interval(secs => $3) "
    "FROM unnest($2::integer[], $4::bigint[]) AS o(p, e) "
    "WHERE l.partition = o.p AND l.epoch = o.e AND l.owner = $1 RETURNING l.partition"
)


class FencedError(StorageError):
    """Another node holds the lease of a partition this batch writes: nothing of it was committed."""


class LeaseLost(StorageError):
    """This node no longer holds the leases of these partitions."""

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        super().__init__(f"lost the lease of partitions {partitions}: another node owns them now")


def default_node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresStorage:
    """The PostgreSQL store (`perdure server --store postgresql://...`)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = POOL_SIZE_DEFAULT,
        node_name: str | None = None,
        lease_ttl_s: float = LEASE_TTL_S_DEFAULT,
    ) -> None:
        if pool_size < 1:
            raise ValueError("the store's pool size must be at least 1")
        if lease_ttl_s <= 2 * LEASE_MARGIN_S:
            raise ValueError(f"the lease TTL must be more than {2 * LEASE_MARGIN_S:g} s")
        self.lease_ttl_s = lease_ttl_s
        self._deadline = 0.0  # time.monotonic() after which this node stops committing
        self.dsn = dsn
        self.node_name = node_name or default_node_name()
        self._pool_size = pool_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._reader: psycopg.Connection[tuple[Any, ...]] | None = None
        self.partitions = 0
        self._bits = 0
        self._epochs: list[int] = []
        self._seq = 0

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        try:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                migrate(conn)
                row = conn.execute("SELECT value FROM cluster_meta WHERE key = 'partitions'").fetchone()
                assert row is not None, "cluster_meta has no partition count"
                self.partitions = int(row[0])
                self._bits = self.partitions.bit_length() - 1
                assert 1 << self._bits == self.partitions, "the partition count is a power of two"
                self._take_all_leases(conn)
            self._reader = self._connect_reader()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self._pool_size, command_timeout=None
            )
        except (psycopg.Error, asyncpg.PostgresError, OSError) as exc:
            raise StorageError(f"postgresql: {exc}") from exc

    def _take_all_leases(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Single node: this node owns every partition (a new epoch for each)."""
        sent = time.monotonic()
        rows = conn.execute(
            "UPDATE partition_lease SET owner = %s, owner_addr = NULL, epoch = epoch + 1, "
            "expires_at = now() + make_interval(secs => %s), last_batch = 0 RETURNING partition, epoch",
            (self.node_name, self.lease_ttl_s),
        ).fetchall()
        self._deadline = sent + self.lease_ttl_s - LEASE_MARGIN_S
        epochs = [0] * self.partitions
        for partition, epoch in rows:
            epochs[int(partition)] = int(epoch)
        assert len(rows) == self.partitions and all(epochs), "every partition has a lease row"
        self._epochs = epochs
        self._seq = 0
        log.info("node %s owns all %d partitions", self.node_name, self.partitions)

    def _connect_reader(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.dsn, autocommit=True)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ------------------------------------------------------------------ writes

    def _p(self) -> asyncpg.Pool[asyncpg.Record]:
        assert self._pool is not None, "the store is not open"
        return self._pool

    async def renew_leases(self) -> list[int]:
        """Extend every lease this node holds (one statement); returns the partitions lost."""
        owned = [p for p, e in enumerate(self._epochs) if e]
        sent = time.monotonic()
        try:
            rows = await self._p().fetch(
                _RENEW_SQL, self.node_name, owned, self.lease_ttl_s, [self._epochs[p] for p in owned]
            )
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"postgresql: lease renewal failed: {exc}") from exc
        kept = {int(r[0]) for r in rows}
        lost = [p for p in owned if p not in kept]
        for p in lost:
            self._epochs[p] = 0  # dropped: no batch of this node can pass its fence again
        if kept:
            self._deadline = sent + self.lease_ttl_s - LEASE_MARGIN_S
        return lost

    async def keep_leases(self, interval_s: float) -> None:
        """Renew every `interval_s` until a lease is lost (LeaseLost). A failed renewal is
        retried at the next interval; the local deadline stops commits meanwhile."""
        while True:
            await asyncio.sleep(interval_s)
            try:
                lost = await self.renew_leases()
            except StorageError:
                log.exception("lease renewal failed; retrying")
                continue
            if lost:
                raise LeaseLost(lost)

    def owned_partitions(self) -> list[int]:
        return [p for p, e in enumerate(self._epochs) if e]

    async def cluster_status(self) -> dict[str, Any]:
        """Partitions with their owner, epoch, lease expiry and age, on the database clock."""
        rows = await self._p().fetch(
            "SELECT partition, owner, owner_addr, epoch, last_batch, "
            "extract(epoch FROM expires_at - now()) AS expires_in_s, now() AS db_now "
            "FROM partition_lease ORDER BY partition"
        )
        parts = [
            {
                "partition": r["partition"],
                "owner": r["owner"],
                "owner_addr": r["owner_addr"],
                "epoch": r["epoch"],
                "last_batch": r["last_batch"],
                "lease_expires_in_s": None if r["expires_in_s"] is None else float(r["expires_in_s"]),
            }
            for r in rows
        ]
        nodes: dict[str, int] = {}
        for part in parts:
            if part["owner"] is not None and (part["lease_expires_in_s"] or 0) > 0:
                nodes[str(part["owner"])] = nodes.get(str(part["owner"]), 0) + 1
        return {
            "store": "postgresql",
            "node": self.node_name,
            "partitions_total": self.partitions,
            "nodes": [{"name": n, "partitions": c} for n, c in sorted(nodes.items())],
            "partitions": parts,
        }

    async def commit_batch(self, batch: WriteBatch) -> None:
        if time.monotonic() > self._deadline:
            raise FencedError("postgresql: this node's leases are past their local deadline (not renewed)")
        self._seq += 1
        args = commit_args(batch)
        extras = extra_statements(batch)
        try:
            if not extras:
                await self._p().execute(
                    COMMIT_SQL, self.node_name, self._epochs, self._seq, self._bits, *args
                )
            else:
                async with self._p().acquire() as conn, conn.transaction():
                    await conn.execute(COMMIT_SQL, self.node_name, self._epochs, self._seq, self._bits, *args)
                    for sql, params in extras:
                        await conn.execute(sql, *params)
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) == FENCED_SQLSTATE:
                raise FencedError(f"postgresql: {exc}") from exc
            raise StorageError(f"postgresql: {exc}") from exc
        except (OSError, asyncpg.InterfaceError) as exc:
            # The outcome may be unknown (connection lost during COMMIT): the runtime
            # rebuilds the processor from what the database holds, acknowledging nothing.
            raise StorageError(f"postgresql connection: {exc}") from exc

    async def get_meta(self, key: str) -> bytes | None:
        try:
            value = await self._p().fetchval("SELECT value FROM meta WHERE key = $1", key)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        return None if value is None else bytes(value)

    async def put_meta(self, key: str, value: bytes) -> None:
        try:
            await self._p().execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                key,
                value,
            )
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            raise StorageError(f"postgresql: {exc}") from exc

    # ------------------------------------------------------------------ reads

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

    def get_dedup(self, producer: str) -> int | None:
        rows = self._rows("SELECT seq FROM dedup WHERE producer = %s", (producer,))
        return int(rows[0][0]) if rows else None

    def expired(self, now_ms: int, limit: int) -> list[bytes]:
        rows = self._rows(
            "SELECT id FROM invocation WHERE expires_at IS NOT NULL AND expires_at <= %s LIMIT %s",
            (now_ms, limit),
        )
        return [bytes(r[0]) for r in rows]

    def load_running(self) -> list[Invocation]:
        running = self._rows("SELECT id, record FROM invocation WHERE status IN (%s, %s)", (INVOKED, PAUSED))
        journals: dict[bytes, list[Entry]] = defaultdict(list)
        for raw, ty, body, at in self._rows(
            "SELECT j.id, j.type, j.body, j.appended_at FROM invocation i "
            "JOIN journal j ON j.partition = i.partition AND j.id = i.id "
            "WHERE i.status IN (%s, %s) ORDER BY j.partition, j.id, j.idx",
            (INVOKED, PAUSED),
        ):
            journals[bytes(raw)].append(Entry(ty, bytes(body), at))
        out = []
        for raw, rec in running:
            inv = decode_record(bytes(raw), rec)
            inv.journal = journals.get(bytes(raw), [])
            out.append(inv)
        return out

    def load_locks(self) -> dict[tuple[str, str], bytes]:
        return {(s, k): bytes(i) for s, k, i in self._rows("SELECT service, key, id FROM lock")}

    def load_inbox(self) -> dict[tuple[str, str], list[tuple[int, bytes]]]:
        out: dict[tuple[str, str], list[tuple[int, bytes]]] = defaultdict(list)
        for s, k, seq, i in self._rows("SELECT service, key, seq, id FROM inbox ORDER BY service, key, seq"):
            out[(s, k)].append((seq, bytes(i)))
        return dict(out)

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

    def load_timers(self, limit: int) -> list[Timer]:
        rows = self._rows(
            "SELECT wake_at, id, kind, arg FROM timer ORDER BY wake_at, id, kind, arg LIMIT %s", (limit,)
        )
        return [Timer(w, bytes(i), k, a) for w, i, k, a in rows]
