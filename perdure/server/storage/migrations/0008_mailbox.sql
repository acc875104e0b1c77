-- Perdure PostgreSQL schema, migration 8: the partition mailbox (docs/architecture.md, "Several
-- nodes"). A row is a message for partition `partition`, written in the sender's own fenced batch
-- (a call, send, signal, awakeable completion, attach or result for a partition another node
-- owns) or, committed before the request is acknowledged, by a node whose ingress found no live
-- owner for the partition. The owner applies each row and deletes it in one of its own batches.
-- `seq` orders the rows: one sender commits its batches one after the other, so its messages to a
-- partition are applied in the order it sent them.
CREATE TABLE mailbox (
  partition integer NOT NULL,
  seq bigint GENERATED ALWAYS AS IDENTITY,
  body bytea NOT NULL,
  posted_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (partition, seq)
);

-- A batch's mailbox rows, called in the batch's own statement beside perdure_commit (one round
-- trip): the rows it applied are deleted, fenced by their partitions' leases (a count short of
-- the rows named raises PF001, the fence's SQLSTATE: the whole batch rolls back); the rows it
-- sends are inserted in send order (identities follow that order) and notified by partition.
CREATE FUNCTION perdure_mail(
  p_owner text, p_epochs bigint[],
  p_done_parts integer[], p_done_seqs bigint[],
  p_post_parts integer[], p_post_bodies bytea[]
) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  gone bigint;
BEGIN
  IF cardinality(p_done_parts) > 0 THEN
    WITH g AS (
      DELETE FROM mailbox m USING unnest(p_done_parts, p_done_seqs) AS d(p, s), partition_lease l
      WHERE m.partition = d.p AND m.seq = d.s AND l.partition = d.p AND l.owner = p_owner
        AND l.epoch = p_epochs[d.p + 1] AND l.expires_at > now()
      RETURNING 1
    )
    SELECT count(*) INTO gone FROM g;
    IF gone <> cardinality(p_done_parts) THEN
      RAISE EXCEPTION 'a mailbox row is gone or its partition is not ours' USING ERRCODE = 'PF001';
    END IF;
  END IF;
  IF cardinality(p_post_parts) > 0 THEN
    INSERT INTO mailbox (partition, body)
    SELECT u.p, u.b FROM unnest(p_post_parts, p_post_bodies) WITH ORDINALITY AS u(p, b, o) ORDER BY u.o;
    PERFORM pg_notify('perdure_mailbox', (SELECT string_agg(DISTINCT x::text, ',') FROM unnest(p_post_parts) AS x));
  END IF;
END
$$;
