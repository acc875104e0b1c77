"""Perdure server/processor."""
