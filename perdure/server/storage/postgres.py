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
connection (`pg_reader.PgReads`); they block the event loop for one loopback
round trip.

Single node: at open the node takes every partition's lease (epoch + 1), which
also fences any older process still writing to this database. Leases expire on
the database clock (`now() + ttl`); `keep_leases` renews all of them in one
statement every renewal interval and raises `LeaseLost` when a partition's
lease is gone (another node took it): the node stops acting for it. Between
renewals the node also stops committing at a local monotonic deadline (the
renewal's send time + ttl - margin), so a paused node cannot act on a lease it
may have lost.

Unknown commit outcome: when the connection breaks while a batch is in flight
(or the wait for the synchronous standby is cancelled), the batch may or may not
have committed. Before the runtime acknowledges or retries anything,
`_reconcile` asks the database: one UPDATE of the lease row of a partition the
batch fenced (its anchor) waits for the lost transaction's row lock, then reads
`last_batch`: equal to the batch's sequence number, the batch committed (and the
UPDATE's own synchronous commit puts it on the standby too); otherwise the row
is re-taken with epoch + 1 (last_batch = -seq marks it as ours), so the lost
batch can never pass its fence later, and the batch counts as failed (the
runtime rebuilds its processor from the database)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import asyncpg
import psycopg

from perdure.server.processor.batch import WriteBatch
from perdure.server.storage.interface import StorageError
from perdure.server.storage.pg_batch import COMMIT_SQL, anchor_partition, commit_args, extra_statements
from perdure.server.storage.pg_leases import (
    ACQUIRE_SQL,
    HEARTBEAT_RENEW_SQL,
    LEASE_MARGIN_S,
    LEASES_SQL,
    LEAVE_SQL,
    LIVE_NODES_SQL,
    RELEASE_SQL,
    LeaseBook,
    LeaseRow,
    NodeRow,
)
from perdure.server.storage.pg_mailbox import (
    MAIL_CHANNEL,
    MAIL_SQL,
    PENDING_SQL,
    POST_ONE_SQL,
    mail_args,
    with_mail,
)
from perdure.server.storage.pg_reader import PgReads, Scoped
from perdure.server.storage.pg_schema import migrate

log = logging.getLogger("perdure.storage.postgres")

FENCED_SQLSTATE = "PF001"
POOL_SIZE_DEFAULT = 8
LEASE_TTL_S_DEFAULT = 6.0

_RENEW_SQL = (
    "UPDATE partition_lease l SET expires_at = now() + make_interval(secs => $3) "
    "FROM unnest($2::integer[], $4::bigint[]) AS o(p, e) "
    "WHERE l.partition = o.p AND l.epoch = o.e AND l.owner = $1 RETURNING l.partition"
)


# A batch whose lease row's last_batch is still seq committed; otherwise the row moves to epoch + 1
# with last_batch = -seq (so a retry of this statement after its own outcome was lost sees its
# own mark). No row: the lease is not this node's any more.
_RECONCILE_SQL = (
    "UPDATE partition_lease SET "
    "epoch = CASE WHEN epoch = $3::bigint AND last_batch <> $4::bigint THEN epoch + 1 ELSE epoch END, "
    "last_batch = CASE WHEN epoch = $3::bigint AND last_batch <> $4::bigint THEN -$4::bigint "
    "ELSE last_batch END "
    "WHERE partition = $1 AND owner = $2 "
    "AND (epoch = $3::bigint OR (epoch = $3::bigint + 1 AND last_batch = -$4::bigint)) "
    "RETURNING epoch"
)
# The fence of a batch that writes only global tables (rules, schedules, dedup marks): the
# lease row of one partition this node owns.
_ANCHOR_FENCE_SQL = (
    "UPDATE partition_lease SET last_batch = $1 "
    "WHERE partition = $2 AND owner = $3 AND epoch = $4 AND expires_at > now()"
)
RECONCILE_RETRY_S = (0.05, 1.0)  # first and longest pause between attempts to reach the database
RENEW_RETRY_S = 0.25  # after a failed renewal (the database restarting, failing over)
_SYNCREP_WARNING = "synchronous replication"
# SQLSTATE classes after which a statement's outcome is unknown: connection exceptions (08) and
# operator intervention, i.e. the backend terminated or the server shut down (57P).
_LOST_SQLSTATES = ("08", "57P")
_CONNECT_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)


def outcome_unknown(exc: BaseException) -> bool:
    """Did `exc` break the connection with a statement in flight (committed or not, who knows)?"""
    if isinstance(exc, asyncpg.PostgresError):
        return str(getattr(exc, "sqlstate", "") or "").startswith(_LOST_SQLSTATES)
    return isinstance(exc, (OSError, asyncpg.InterfaceError))


class FencedError(StorageError):
    """Another node holds the lease of a partition this batch writes: nothing of it was committed."""


class LeaseLost(StorageError):
    """This node no longer holds the leases of these partitions."""

    def __init__(self, partitions: list[int]) -> None:
        self.partitions = partitions
        super().__init__(f"lost the lease of partitions {partitions}: another node owns them now")


async def _no_reset(conn: Any) -> None:
    """The pool's reset on release (asyncpg's default is one more round trip per commit:
    `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`). These connections never change
    session state; asyncpg still rolls back an open transaction and drops listeners on release."""


def default_node_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class PostgresStorage(PgReads):
    """The PostgreSQL store (`perdure server --store postgresql://...`)."""

    def __init__(
        self,
        dsn: str,
        *,
        pool_size: int = POOL_SIZE_DEFAULT,
        node_name: str | None = None,
        lease_ttl_s: float = LEASE_TTL_S_DEFAULT,
        cluster: bool = False,
        address: str | None = None,
    ) -> None:
        if pool_size < 1:
            raise ValueError("the store's pool size must be at least 1")
        if lease_ttl_s <= 2 * LEASE_MARGIN_S:
            raise ValueError(f"the lease TTL must be more than {2 * LEASE_MARGIN_S:g} s")
        self.lease_ttl_s = lease_ttl_s
        # A cluster node starts with no lease and takes its share (cluster/node.py); a single
        # node takes every partition at open.
        self.cluster = cluster
        self.address = address
        self.dsn = dsn
        self.node_name = node_name or default_node_name()
        self._pool_size = pool_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._reader: psycopg.Connection[tuple[Any, ...]] | None = None
        self.partitions = 0
        self._bits = 0
        self._leases = LeaseBook(0, lease_ttl_s)
        self._seq = 0
        self._syncrep_cancelled: set[int] = set()  # backends whose standby wait was cancelled
        self._dropped: list[int] = []  # partitions found not ours by a reconciliation
        self.reconciled = {"committed": 0, "failed": 0}  # unknown outcomes, by what they were

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
                self._leases = LeaseBook(self.partitions, self.lease_ttl_s)
                if not self.cluster:
                    self._take_all_leases(conn)
            self._reader = self._connect_reader()
            self._pool = await asyncpg.create_pool(
                self.dsn, min_size=1, max_size=self._pool_size, command_timeout=None, reset=_no_reset
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
        for partition, epoch in rows:
            self._leases.held(int(partition), int(epoch), sent)
        assert len(rows) == self.partitions and all(self._leases.epochs), "every partition has a lease row"
        self._seq = 0
        log.info("node %s owns all %d partitions", self.node_name, self.partitions)

    def _on_server_message(self, conn: Any, message: Any) -> None:
        # "canceling wait for synchronous replication ...": the transaction committed locally but
        # may not be on the standby; the statement returns as if all were well.
        if _SYNCREP_WARNING in str(getattr(message, "message", "")):
            self._syncrep_cancelled.add(conn.get_server_pid())

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
        """Extend every lease this node holds (one statement, which also heartbeats a cluster
        node); returns the partitions lost (another node took them: a new epoch; or found not
        ours by a reconciliation). A partition re-taken meanwhile is renewed next time."""
        owned = self._leases.owned()
        epochs = [self._leases.epochs[p] for p in owned]
        sent = time.monotonic()
        try:
            if self.cluster:
                rows = await self._p().fetch(
                    HEARTBEAT_RENEW_SQL, self.node_name, owned, self.lease_ttl_s, epochs, self.address
                )
            else:
                rows = await self._p().fetch(_RENEW_SQL, self.node_name, owned, self.lease_ttl_s, epochs)
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: lease renewal failed: {exc}") from exc
        lost = self._leases.renewed(list(zip(owned, epochs, strict=True)), {int(r[0]) for r in rows}, sent)
        lost += [p for p in self._dropped if p not in lost]
        self._dropped = []
        return lost

    async def revalidate(self) -> list[int]:
        """Renew now (after a fenced commit); when the database cannot be reached, drop the leases
        past their local deadline. Returns the partitions no longer held."""
        try:
            return await self.renew_leases()
        except StorageError:
            now = time.monotonic()
            stale = [p for p in self._leases.owned() if self._leases.deadline_of(p) < now]
            self._leases.drop(stale)
            return stale

    async def keep_leases(self, interval_s: float) -> None:
        """Renew every `interval_s` until a lease is lost (LeaseLost). A failed renewal is
        retried at the next interval; the local deadline stops commits meanwhile."""
        pause = interval_s
        while True:
            await asyncio.sleep(pause)
            try:
                lost = await self.renew_leases()
            except StorageError as exc:
                log.warning("%s; retrying in %g s", exc, RENEW_RETRY_S)
                pause = min(interval_s, RENEW_RETRY_S)
                continue
            pause = interval_s
            if lost:
                raise LeaseLost(lost)

    # ------------------------------------------------------------------ cluster membership

    async def live_nodes(self) -> list[NodeRow]:
        """Nodes whose heartbeat is younger than a lease lifetime (database clock)."""
        try:
            rows = await self._p().fetch(LIVE_NODES_SQL, self.lease_ttl_s)
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        return [NodeRow(r["name"], r["address"], float(r["age_s"])) for r in rows]

    async def leases(self) -> list[LeaseRow]:
        try:
            rows = await self._p().fetch(LEASES_SQL)
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        return [LeaseRow(int(r[0]), r[1], int(r[2]), bool(r[3]), r[4]) for r in rows]

    async def acquire(self, partitions: list[int]) -> list[int]:
        """Take the leases of `partitions` that are free or expired, each with a new epoch (which
        fences any earlier holder); returns the partitions taken."""
        sent = time.monotonic()
        try:
            rows = await self._p().fetch(
                ACQUIRE_SQL, self.node_name, self.address, self.lease_ttl_s, partitions
            )
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: lease acquisition failed: {exc}") from exc
        taken = []
        for partition, epoch in rows:
            self._leases.held(int(partition), int(epoch), sent)
            taken.append(int(partition))
        return sorted(taken)

    def relinquish(self, partitions: list[int]) -> list[tuple[int, int]]:
        """Stop writing `partitions` at once (their fence fails from now on) before `release`."""
        return self._leases.drop(partitions)

    async def release(self, dropped: list[tuple[int, int]]) -> None:
        """Hand the relinquished leases back (expired now), so their next owner need not wait."""
        if not dropped:
            return
        try:
            await self._p().execute(
                RELEASE_SQL, self.node_name, [p for p, _ in dropped], [e for _, e in dropped]
            )
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: lease release failed: {exc}") from exc

    async def leave(self) -> None:
        """Graceful stop of a cluster node: release every lease, remove the node's row."""
        await self.release(self._leases.drop(self._leases.owned()))
        try:
            await self._p().execute(LEAVE_SQL, self.node_name)
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc

    def owned_partitions(self) -> list[int]:
        return self._leases.owned()

    @property
    def partition_bits(self) -> int:
        return self._bits

    def epoch_of(self, partition: int) -> int:
        return self._leases.epochs[partition]

    def recovery_for(self, partitions: set[int]) -> Scoped:
        """What a processor adopting `partitions` loads (those partitions only)."""
        return Scoped(self, sorted(partitions))

    async def cluster_status(self) -> dict[str, Any]:
        """Partitions with their owner, epoch, lease expiry and age, on the database clock."""
        rows = await self._p().fetch(
            "SELECT partition, owner, owner_addr, epoch, last_batch, "
            "extract(epoch FROM expires_at - now()) AS expires_in_s, "
            "extract(epoch FROM now() - (expires_at - make_interval(secs => $1))) AS age_s, "
            "(SELECT count(*) FROM mailbox m WHERE m.partition = l.partition) AS mailbox_rows "
            "FROM partition_lease l ORDER BY partition",
            self.lease_ttl_s,
        )
        parts = [
            {
                "partition": r["partition"],
                "owner": r["owner"],
                "owner_addr": r["owner_addr"],
                "epoch": r["epoch"],
                "last_batch": r["last_batch"],
                "lease_expires_in_s": None if r["expires_in_s"] is None else float(r["expires_in_s"]),
                "lease_age_s": None if r["age_s"] is None else float(r["age_s"]),
                "mailbox_rows": int(r["mailbox_rows"]),  # messages waiting for the partition's owner
            }
            for r in rows
        ]
        counts: dict[str, int] = {}
        for part in parts:
            if part["owner"] is not None and (part["lease_expires_in_s"] or 0) > 0:
                counts[str(part["owner"])] = counts.get(str(part["owner"]), 0) + 1
        registered = await self._p().fetch(
            "SELECT name, address, extract(epoch FROM now() - heartbeat_at)::float8 AS age_s, "
            "heartbeat_at > now() - make_interval(secs => $1) AS live FROM cluster_node ORDER BY name",
            self.lease_ttl_s,
        )
        nodes: dict[str, dict[str, Any]] = {
            r["name"]: {
                "name": r["name"],
                "address": r["address"],
                "heartbeat_age_s": float(r["age_s"]),
                "live": bool(r["live"]),
                "partitions": counts.get(r["name"], 0),
            }
            for r in registered
        }
        for name, count in counts.items():  # a single node (no row in cluster_node)
            nodes.setdefault(name, {"name": name, "partitions": count})
        return {
            "store": "postgresql",
            "node": self.node_name,
            "partitions_total": self.partitions,
            "owned_here": self.owned_partitions(),  # this node's lease book
            "nodes": [nodes[n] for n in sorted(nodes)],
            "partitions": parts,
        }

    async def commit_batch(self, batch: WriteBatch) -> None:
        """Commit one batch, or raise: FencedError (not this node's lease: nothing committed),
        StorageError (nothing committed, now or later). A connection lost with the batch in
        flight is reconciled first, so a batch that did commit returns normally."""
        if self._leases.expired_locally():
            raise FencedError("postgresql: this node's leases are past their local deadline (not renewed)")
        self._seq += 1
        seq = self._seq
        args = commit_args(batch)
        extras = extra_statements(batch)
        anchor = anchor_partition(batch, self._bits)
        anchor_fence = anchor is None  # global tables only: fence one partition this node owns
        if anchor is None:
            owned = self.owned_partitions()
            if not owned:
                raise FencedError("postgresql: this node owns no partition")
            anchor = owned[0]
        pool = self._p()
        try:
            conn = await pool.acquire()
        except _CONNECT_ERRORS as exc:  # nothing was sent
            raise StorageError(f"postgresql: cannot reach the database: {exc}") from exc
        pid = conn.get_server_pid()
        conn.add_log_listener(self._on_server_message)  # removed before release (the pool wants none)
        try:
            mailing = bool(batch.outbox or batch.mail_done)  # only ever on a cluster node
            if not extras and not anchor_fence:
                head = (self.node_name, self._leases.epochs, seq, self._bits)
                if not mailing:
                    await conn.execute(COMMIT_SQL, *head, *args)
                else:
                    sql = with_mail(COMMIT_SQL, len(head) + len(args))
                    await conn.execute(sql, *head, *args, *mail_args(batch))
            else:
                async with conn.transaction():
                    if anchor_fence:
                        done = await conn.execute(
                            _ANCHOR_FENCE_SQL, seq, anchor, self.node_name, self._leases.epochs[anchor]
                        )
                        if done != "UPDATE 1":
                            raise FencedError(f"postgresql: partition {anchor}'s lease is no longer ours")
                    epochs = self._leases.epochs
                    await conn.execute(COMMIT_SQL, self.node_name, epochs, seq, self._bits, *args)
                    for sql, params in extras:
                        await conn.execute(sql, *params)
                    if mailing:
                        await conn.execute(MAIL_SQL, self.node_name, epochs, *mail_args(batch))
        except asyncpg.PostgresError as exc:
            if getattr(exc, "sqlstate", None) == FENCED_SQLSTATE:
                raise FencedError(f"postgresql: {exc}") from exc
            if not outcome_unknown(exc):
                raise StorageError(f"postgresql: {exc}") from exc
            cause = f"connection lost ({exc})"
        except (OSError, asyncpg.InterfaceError) as exc:
            cause = f"connection lost ({exc})"
        else:
            if pid not in self._syncrep_cancelled:
                return
            cause = "the wait for the synchronous standby was cancelled"
        finally:
            await self._release(conn)
        self._syncrep_cancelled.discard(pid)
        if not await self._reconcile(seq, anchor, cause):
            raise StorageError(f"postgresql: the batch did not commit ({cause})")

    async def post_mail(self, partition: int, body: bytes) -> int:
        """A request for a partition without a live owner: one row in its mailbox, committed (and
        NOTIFYed) when this returns; its seq."""
        try:
            row = await self._p().fetchrow(POST_ONE_SQL, partition, body)
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        assert row is not None
        return int(row[0])

    async def mail_pending(self, partition: int, seq: int) -> bool:
        try:
            return bool(await self._p().fetchval(PENDING_SQL, partition, seq))
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc

    async def watch_mail(self, wake: Callable[[set[int]], None]) -> None:
        """Call `wake(partitions)` for every mailbox NOTIFY (rows committed for those partitions)
        until the listening connection is lost: then return (the caller listens again)."""
        try:
            conn = await asyncpg.connect(self.dsn)
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        lost = asyncio.Event()

        def on_notify(_conn: Any, _pid: int, _channel: str, payload: object) -> None:
            wake({int(p) for p in str(payload).split(",") if p})

        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(MAIL_CHANNEL, on_notify)
            await lost.wait()
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc
        finally:
            with contextlib.suppress(*_CONNECT_ERRORS):
                await conn.close(timeout=1)

    async def _release(self, conn: Any) -> None:
        try:
            if not conn.is_closed():
                conn.remove_log_listener(self._on_server_message)
            await self._p().release(conn)
        except _CONNECT_ERRORS:
            log.debug("releasing a broken connection", exc_info=True)

    async def _reconcile(self, seq: int, anchor: int, cause: str) -> bool:
        """Did batch `seq` commit? Asked of the database until it answers (nothing is
        acknowledged or retried meanwhile); a batch that did not commit never will."""
        epoch = self._leases.epochs[anchor]
        log.warning("batch %d: %s; reading its outcome from partition %d's lease", seq, cause, anchor)
        pause, pause_max = RECONCILE_RETRY_S
        while True:
            try:
                row = await self._p().fetchrow(_RECONCILE_SQL, anchor, self.node_name, epoch, seq)
                break
            except asyncpg.PostgresError as exc:
                if not outcome_unknown(exc):
                    raise StorageError(f"postgresql: reconciling batch {seq}: {exc}") from exc
                err: Exception = exc
            except _CONNECT_ERRORS as exc:
                err = exc
            log.warning("batch %d: outcome still unknown (%s); retrying in %g s", seq, err, pause)
            await asyncio.sleep(pause)
            pause = min(pause_max, pause * 2)
        if row is None:
            self.reconciled["failed"] += 1
            self._leases.drop([anchor])
            self._dropped.append(anchor)
            raise FencedError(
                f"postgresql: partition {anchor}'s lease was taken while batch {seq}'s outcome was unknown"
            )
        committed = int(row[0]) == epoch
        if not committed:
            self._leases.epochs[anchor] = int(row[0])  # re-taken: the lost batch's fence can never pass
        self.reconciled["committed" if committed else "failed"] += 1
        log.warning("batch %d %s", seq, "committed" if committed else "did not commit; it never will")
        return committed

    async def get_meta(self, key: str) -> bytes | None:
        try:
            value = await self._p().fetchval("SELECT value FROM meta WHERE key = $1", key)
        except _CONNECT_ERRORS as exc:
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
        except _CONNECT_ERRORS as exc:
            raise StorageError(f"postgresql: {exc}") from exc

    def _scope(self) -> list[int] | None:
        """The partitions this node's reads for recovery cover (None: a single node, all)."""
        return self._leases.owned() if self.cluster else None
