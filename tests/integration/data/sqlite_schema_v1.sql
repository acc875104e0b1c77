-- The SQLite schema of version 1 data directories, verbatim (for tests/integration/test_sqlite_upgrade.py).
-- Perdure SQLite schema, version 1. Invocation ids are 24-byte blobs whose
-- first 8 bytes are the partition key (big-endian), so every id-keyed table is
-- ordered by partition first.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS invocation (
  id BLOB PRIMARY KEY,
  status TEXT NOT NULL,
  service TEXT NOT NULL,
  key TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER, -- completed invocations: when their retention runs out
  record BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS invocation_status ON invocation (status);
CREATE INDEX IF NOT EXISTS invocation_expiry ON invocation (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS journal (
  id BLOB NOT NULL,
  idx INTEGER NOT NULL,
  type INTEGER NOT NULL,
  body BLOB NOT NULL,
  appended_at INTEGER NOT NULL,
  PRIMARY KEY (id, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS state (
  service TEXT NOT NULL,
  key TEXT NOT NULL,
  skey BLOB NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (service, key, skey)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS timer (
  wake_at INTEGER NOT NULL,
  id BLOB NOT NULL,
  kind INTEGER NOT NULL,
  arg INTEGER NOT NULL,
  PRIMARY KEY (wake_at, id, kind, arg)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS lock (
  service TEXT NOT NULL,
  key TEXT NOT NULL,
  id BLOB NOT NULL,
  PRIMARY KEY (service, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
  service TEXT NOT NULL,
  key TEXT NOT NULL,
  seq INTEGER NOT NULL,
  id BLOB NOT NULL,
  PRIMARY KEY (service, key, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS promise (
  service TEXT NOT NULL,
  key TEXT NOT NULL,
  name TEXT NOT NULL,
  record BLOB NOT NULL,
  PRIMARY KEY (service, key, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_rule ( -- concurrency/rate rules (/limits/rules)
  pattern TEXT PRIMARY KEY,
  record BLOB NOT NULL,
  tat INTEGER NOT NULL DEFAULT 0 -- token bucket: theoretical arrival time of the next start (us)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS limit_entry ( -- invocations a rule holds: running, or queued in seq order
  id BLOB PRIMARY KEY,
  seq INTEGER NOT NULL,
  running INTEGER NOT NULL,
  service TEXT NOT NULL,
  handler TEXT NOT NULL,
  key TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule ( -- cron and interval schedules (/schedules)
  name TEXT PRIMARY KEY,
  record BLOB NOT NULL
) WITHOUT ROWID;
-- Ingested record streams (a Kafka subscription's topic partition): the highest offset already
-- turned into an invocation, written in the same transaction as that invocation.
CREATE TABLE IF NOT EXISTS dedup (
  producer TEXT PRIMARY KEY,
  seq INTEGER NOT NULL
) WITHOUT ROWID;
