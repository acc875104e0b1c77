"""Compatibility scenarios run against both the real Restate server and Perdure."""
