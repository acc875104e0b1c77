-- Perdure SQLite schema, version 3 (sqlite_layout.py upgrades versions 1 and 2 at open).
-- Invocation ids are 24-byte blobs whose first 8 bytes are the partition key: random for unkeyed
-- invocations, a hash for keyed ones. Tables keyed by them would take every new row at a random
-- place of a B-tree as large as the history, so the invocation rows are stored in insertion order
-- (`seq`, the rowid) with the id as a unique index (the only B-tree new ids land in at random),
-- and the journal, its status and expiry indexes are keyed by `seq`: a new invocation's rows
-- share the pages at the right edge of their B-trees however many completed ones are stored.
-- Every table that can hold a user-sized value (invocation records, journal bodies, state values,
-- promise values, schedule bodies, limit rules' free-text descriptions) is a rowid table, its key
-- a UNIQUE or PRIMARY KEY index of small cells: SQLite compares a key against a whole cell, so in
-- a WITHOUT ROWID table every search passing a 10 MB cell reads its 10 MB of overflow pages
-- (1,000 small journal appends next to a big entry took 10-100 s; each state get or set beside a
-- 10 MB value read it again). Writes to them are UPSERTs on that key (an update in place, where
-- INSERT OR REPLACE would delete the row and insert it again under a new rowid). The WITHOUT
-- ROWID tables hold only keys, ids and numbers (timer, lock, inbox, limit_entry, dedup); keys
-- everywhere are assumed small (object keys, state keys, promise and schedule names).
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS invocation (
  seq INTEGER PRIMARY KEY, -- insertion order; the journal's key
  id BLOB NOT NULL UNIQUE,
  status TEXT NOT NULL,
  service TEXT NOT NULL,
  key TEXT,
  created_at INTEGER NOT NULL,
  expires_at INTEGER, -- completed invocations: when their retention runs out
  record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS invocation_status ON invocation (status);
CREATE INDEX IF NOT EXISTS invocation_expiry ON invocation (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS journal (
  inv INTEGER NOT NULL, -- invocation.seq; deleted with the invocation row
  idx INTEGER NOT NULL,
  type INTEGER NOT NULL,
  body BLOB NOT NULL,
  appended_at INTEGER NOT NULL,
  PRIMARY KEY (inv, idx) -- an index of small cells; the rows (and bodies) in insertion order
);
CREATE TABLE IF NOT EXISTS state (
  service TEXT NOT NULL,
  key TEXT NOT NULL,
  skey BLOB NOT NULL,
  value BLOB NOT NULL,
  PRIMARY KEY (service, key, skey) -- an index of small cells; the values in the rows
);
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
  PRIMARY KEY (service, key, name) -- an index of small cells; the values in the rows
);
CREATE TABLE IF NOT EXISTS limit_rule ( -- concurrency/rate rules (/limits/rules)
  pattern TEXT NOT NULL PRIMARY KEY, -- an index; the record holds the rule's description
  record BLOB NOT NULL,
  tat INTEGER NOT NULL DEFAULT 0 -- token bucket: theoretical arrival time of the next start (us)
);
CREATE TABLE IF NOT EXISTS limit_entry ( -- invocations a rule holds: running, or queued in seq order
  id BLOB PRIMARY KEY,
  seq INTEGER NOT NULL,
  running INTEGER NOT NULL,
  service TEXT NOT NULL,
  handler TEXT NOT NULL,
  key TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedule ( -- cron and interval schedules (/schedules)
  name TEXT NOT NULL PRIMARY KEY, -- an index; the record holds the body every tick sends
  record BLOB NOT NULL
);
-- Ingested record streams (a Kafka subscription's topic partition): the highest offset already
-- turned into an invocation, written in the same transaction as that invocation.
CREATE TABLE IF NOT EXISTS dedup (
  producer TEXT PRIMARY KEY,
  seq INTEGER NOT NULL
) WITHOUT ROWID;
