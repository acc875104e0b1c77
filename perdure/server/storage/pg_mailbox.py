"""The partition mailbox's SQL (PostgreSQL, migration 8).

Rows go in with the batch that produced them (same transaction, so exactly once without a
two-phase commit) and a NOTIFY on `MAIL_CHANNEL` naming their partitions, delivered when that
transaction commits; the owner's batch deletes the rows it applied, fenced by its lease in the
same statement: a count short of the rows named means the lease (or a row) is gone, and the
whole batch rolls back. Both in the batch's one statement (`with_mail`), beside `perdure_commit`."""

from __future__ import annotations

from perdure.server.processor.batch import WriteBatch

MAIL_CHANNEL = "perdure_mailbox"
_MAIL_CALL = "perdure_mail($1, $2, ${}, ${}, ${}, ${})"
_with_mail: dict[str, str] = {}


def with_mail(commit_sql: str, args: int) -> str:
    """`commit_sql` (one `SELECT perdure_commit(...)` of `args` parameters) with the batch's
    mailbox rows in the same statement: `perdure_mail` (migration 8) takes 4 more parameters."""
    sql = _with_mail.get(commit_sql)
    if sql is None:
        sql = _with_mail[commit_sql] = f"{commit_sql}, " + _MAIL_CALL.format(*range(args + 1, args + 5))
    return sql


def mail_args(batch: WriteBatch) -> tuple[list[int], list[int], list[int], list[bytes]]:
    done, post = batch.mail_done, batch.outbox
    return [p for p, _ in done], [q for _, q in done], [p for p, _ in post], [b for _, b in post]


MAIL_SQL = "SELECT " + _MAIL_CALL.format(3, 4, 5, 6)

POST_ONE_SQL = (
    "WITH posted AS (INSERT INTO mailbox (partition, body) VALUES ($1, $2) RETURNING seq) "
    f"SELECT seq, pg_notify('{MAIL_CHANNEL}', $1::text) FROM posted"
)
PENDING_SQL = "SELECT EXISTS (SELECT 1 FROM mailbox WHERE partition = $1 AND seq = $2)"
READ_SQL = "SELECT partition, seq, body FROM mailbox WHERE partition = ANY(%s) ORDER BY seq LIMIT %s"
