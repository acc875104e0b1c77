"""Telemetry: Prometheus metrics and OpenTelemetry traces, each loaded only when enabled."""
