-- Perdure PostgreSQL schema, migration 1: the durable tables.
-- `partition` leads every durable primary key: partition = the top log2(P) bits
-- of the 64-bit partition key (ranges, not modulo, so a partition can be split
-- later). Invocation ids are 24-byte strings whose first 8 bytes are the
-- partition key (big-endian); keyed rows (state, lock, inbox, promise) keep the
-- key's partition key in `pk` (a blake2b hash computed by the server).
CREATE TABLE cluster_meta (key text PRIMARY KEY, value text NOT NULL);
INSERT INTO cluster_meta (key, value) VALUES ('partitions', '64');

CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL);

-- One row per partition: who owns it, since which epoch, until when (database
-- clock), and the last batch it committed. Every batch transaction writes the
-- rows of the partitions it touches, conditionally on owner, epoch and expiry.
CREATE TABLE partition_lease (
  partition integer PRIMARY KEY,
  owner text,
  owner_addr text,
  epoch bigint NOT NULL DEFAULT 0,
  expires_at timestamptz,
  last_batch bigint NOT NULL DEFAULT 0
) WITH (fillfactor = 70);
INSERT INTO partition_lease (partition) SELECT generate_series(0, 63);

CREATE TABLE invocation (
  partition integer NOT NULL,
  id bytea NOT NULL,
  status text NOT NULL,
  service text NOT NULL,
  key text,
  created_at bigint NOT NULL,
  expires_at bigint, -- completed invocations: when their retention runs out (ms)
  record bytea NOT NULL, -- the processor's record, JSON
  PRIMARY KEY (partition, id)
);
CREATE INDEX invocation_running ON invocation (partition) WHERE status IN ('invoked', 'paused');
CREATE INDEX invocation_expiry ON invocation (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE journal (
  partition integer NOT NULL,
  id bytea NOT NULL,
  idx integer NOT NULL,
  type integer NOT NULL,
  body bytea NOT NULL,
  appended_at bigint NOT NULL,
  writer_epoch bigint NOT NULL, -- the lease epoch of the batch that wrote it
  PRIMARY KEY (partition, id, idx)
);

CREATE TABLE state (
  partition integer NOT NULL,
  service text NOT NULL,
  key text NOT NULL,
  skey bytea NOT NULL,
  value bytea NOT NULL,
  pk bigint NOT NULL,
  PRIMARY KEY (partition, service, key, skey)
);

CREATE TABLE timer (
  partition integer NOT NULL,
  wake_at bigint NOT NULL,
  id bytea NOT NULL,
  kind integer NOT NULL,
  arg bigint NOT NULL,
  PRIMARY KEY (partition, wake_at, id, kind, arg)
);
CREATE INDEX timer_wake ON timer (wake_at, id, kind, arg);

CREATE TABLE lock (
  partition integer NOT NULL,
  service text NOT NULL,
  key text NOT NULL,
  id bytea NOT NULL,
  pk bigint NOT NULL,
  PRIMARY KEY (partition, service, key)
);

CREATE TABLE inbox (
  partition integer NOT NULL,
  service text NOT NULL,
  key text NOT NULL,
  seq bigint NOT NULL,
  id bytea NOT NULL,
  pk bigint NOT NULL,
  PRIMARY KEY (partition, service, key, seq)
);

CREATE TABLE promise (
  partition integer NOT NULL,
  service text NOT NULL,
  key text NOT NULL,
  name text NOT NULL,
  record bytea NOT NULL,
  pk bigint NOT NULL,
  PRIMARY KEY (partition, service, key, name)
);
