-- Perdure PostgreSQL schema, migration 7: several nodes on one database.
-- Nodes register here and heartbeat (database clock) with the statement that renews their
-- leases; every node reads the live ones to place the partitions. `address` is the node's
-- admin API as other nodes reach it: requests for a partition are forwarded to its owner.
CREATE TABLE cluster_node (
  name text PRIMARY KEY,
  address text,
  started_at timestamptz NOT NULL DEFAULT now(),
  heartbeat_at timestamptz NOT NULL DEFAULT now()
);
