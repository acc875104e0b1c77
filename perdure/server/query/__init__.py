"""Perdure server/query."""
