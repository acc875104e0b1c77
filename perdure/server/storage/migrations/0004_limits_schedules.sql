-- Migration 4: concurrency/rate rules and the invocations they hold, and schedules. Global
-- (not per partition): one rule book and one schedule list for the cluster. Written by the
-- statements of pg_batch.extra_statements in the same transaction as perdure_commit.
CREATE TABLE limit_rule (
  pattern text PRIMARY KEY,
  record bytea NOT NULL,
  tat bigint NOT NULL DEFAULT 0 -- token bucket: theoretical arrival time of the next start (us)
);
CREATE TABLE limit_entry (
  id bytea PRIMARY KEY,
  seq bigint NOT NULL,
  running integer NOT NULL,
  service text NOT NULL,
  handler text NOT NULL,
  key text
);
CREATE TABLE schedule (
  name text PRIMARY KEY,
  record bytea NOT NULL
);
