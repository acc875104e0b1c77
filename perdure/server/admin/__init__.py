"""Perdure server/admin."""
