"""Services of `bench.mailbox` (official Python SDK): `Hop/relay` (a plain service: its
invocation lives on the node whose ingress it reached) calls the shared handler `Echo/{key}/echo`
of an object key that is on that node or on another one."""

from __future__ import annotations

import restate

echo_object = restate.VirtualObject("Echo")


@echo_object.handler(kind="shared")
async def echo(ctx: restate.ObjectSharedContext, text: str) -> str:
    return text


hop = restate.Service("Hop")


@hop.handler()
async def relay(ctx: restate.Context, key: str) -> str:
    result: str = await ctx.object_call(echo, key=key, arg=key)
    return result


app = restate.app(services=[echo_object, hop])
