"""Kafka ingestion: clusters and subscriptions (catalog, admin routes) and the consumers that turn
records into invocations exactly once."""
