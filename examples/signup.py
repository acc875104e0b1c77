"""A sign-up workflow: `run` creates the user, e-mails a link and waits (durably, suspended)
for the shared `click` handler to resolve the promise, with a timeout.
Serve with `hypercorn examples.signup:app --bind 127.0.0.1:9080`."""

from __future__ import annotations

from datetime import timedelta

from pydantic import BaseModel

import perdure as restate


class User(BaseModel):
    name: str
    email: str


signup = restate.Workflow("Signup")


@signup.main()
async def run(ctx: restate.WorkflowContext, user: User) -> str:
    user_id = str(ctx.uuid())  # deterministic: the same on every retry
    await ctx.run("create user", lambda: print(f"creating {user.name} as {user_id}", flush=True))
    secret = str(ctx.uuid())
    await ctx.run("send email", lambda: print(f"mail {user.email}: click with secret {secret}", flush=True))
    ctx.set("status", "waiting for click")
    match await restate.select(click=ctx.promise("click").value(), timeout=ctx.sleep(timedelta(days=1))):
        case ["click", clicked] if clicked == secret:
            ctx.set("status", "verified")
            return f"{user.name} verified"
        case ["click", _]:
            raise restate.TerminalError("wrong secret", status_code=400)
        case _:
            raise restate.TerminalError("link expired", status_code=408)


@signup.handler()
async def click(ctx: restate.WorkflowSharedContext, secret: str) -> None:
    await ctx.promise("click").resolve(secret)


@signup.handler()
async def status(ctx: restate.WorkflowSharedContext) -> str | None:
    current: str | None = await ctx.get("status")
    return current


app = restate.app(services=[signup])

if __name__ == "__main__":
    from examples.serve import serve

    serve(app)
