"""The partition mailbox's SQL (PostgreSQL, migration 8).

Rows go in with the batch that produced them (same transaction, so exactly once without a
two-phase commit) and a NOTIFY on `MAIL_CHANNEL` naming their partitions, delivered when that
transaction commits; the owner's batch deletes the rows it applied, fenced by its lease in the
same statement: a count short of the rows named means the lease (or a row) is gone, and the
whole batch rolls back."""

from __future__ import annotations

MAIL_CHANNEL = "perdure_mailbox"

# (partitions[], bodies[]) in send order: identities are assigned in that order.
POST_ROWS_SQL = (
    "WITH posted AS (INSERT INTO mailbox (partition, body) "
    "SELECT p, b FROM unnest($1::integer[], $2::bytea[]) WITH ORDINALITY AS u(p, b, o) ORDER BY o "
    "RETURNING partition) "
    f"SELECT pg_notify('{MAIL_CHANNEL}', string_agg(DISTINCT partition::text, ',')) FROM posted"
)
POST_ONE_SQL = (
    "WITH posted AS (INSERT INTO mailbox (partition, body) VALUES ($1, $2) RETURNING seq) "
    f"SELECT seq, pg_notify('{MAIL_CHANNEL}', $1::text) FROM posted"
)
# (partitions[], seqs[], owner, epochs[] indexed by partition): how many rows were deleted.
DONE_SQL = (
    "WITH gone AS (DELETE FROM mailbox m USING unnest($1::integer[], $2::bigint[]) AS d(p, s), "
    "partition_lease l WHERE m.partition = d.p AND m.seq = d.s AND l.partition = d.p "
    "AND l.owner = $3 AND l.epoch = ($4::bigint[])[d.p + 1] AND l.expires_at > now() RETURNING 1) "
    "SELECT count(*) FROM gone"
)
PENDING_SQL = "SELECT EXISTS (SELECT 1 FROM mailbox WHERE partition = $1 AND seq = $2)"
READ_SQL = "SELECT partition, seq, body FROM mailbox WHERE partition = ANY(%s) ORDER BY seq LIMIT %s"
