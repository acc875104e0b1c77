"""The Kafka benchmark's sinks (official Python SDK): a service handler and an object handler that
only take the record, so the benchmark measures the server's path from topic to completed invocation."""

from __future__ import annotations

import restate

sink = restate.Service("BenchSink")


@sink.handler()
async def take(ctx: restate.Context, value: int) -> int:
    return value


keyed = restate.VirtualObject("BenchKeyed")


@keyed.handler()
async def take_keyed(ctx: restate.ObjectContext, value: int) -> int:
    return value


app = restate.app([sink, keyed])
