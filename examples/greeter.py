"""A Greeter service with one durable step. Serve it with
`hypercorn examples.greeter:app --bind 127.0.0.1:9080` (or `python examples/greeter.py`)."""

from __future__ import annotations

import perdure as restate

greeter = restate.Service("Greeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    # The greeting is computed once and journaled: a retry or a crash replays it.
    return await ctx.run("build greeting", lambda: f"Hello, {name}!")


app = restate.app(services=[greeter])

if __name__ == "__main__":
    from examples.serve import serve

    serve(app)
