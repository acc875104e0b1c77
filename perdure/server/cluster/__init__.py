"""Several Perdure nodes over one PostgreSQL: placement of the partitions (`placement`), the
node's lease keeper (`node`), forwarding of requests to a partition's owner (`router`, `wire`)."""
