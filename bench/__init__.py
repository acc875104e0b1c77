"""Benchmark: the same official-SDK Greeter behind Perdure and the real Restate server."""
