"""Perdure server/cluster."""
