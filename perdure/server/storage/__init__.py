"""Perdure server/storage."""
