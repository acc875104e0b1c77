"""Perdure server/ingress."""
