"""Perdure server/invoker."""
