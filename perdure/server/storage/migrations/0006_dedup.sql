-- Perdure PostgreSQL schema, migration 6: ingested record streams (Kafka subscriptions). Each
-- stream's highest offset already turned into an invocation, written by the batch that creates it.
CREATE TABLE dedup (
  producer text PRIMARY KEY,
  seq bigint NOT NULL
);
