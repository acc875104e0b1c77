"""Perdure testing."""
