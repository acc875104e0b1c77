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
