"""Official Python SDK services for the configuration suites: a handler that fails its first
attempts (retry policy), a workflow (workflow retention), per-handler options and a private
handler (ingress-private), and an app signed requests must reach (`identity_keys`)."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import restate
from restate.retry_policy import InvocationRetryPolicy

from tests.compat.services.ledger import LEDGER_ENV, events, record

FAILED_ATTEMPTS = 7  # of the first 10: 70 % of them fail
IDENTITY_KEY_ENV = "IDENTITY_PUBLIC_KEY"

flaky = restate.Service("ConfFlaky")


@flaky.handler()
async def run(ctx: restate.Context, tag: str) -> str:
    record(tag, "attempt")
    count = events(Path(os.environ[LEDGER_ENV]), tag).count("attempt")
    if count <= FAILED_ATTEMPTS:
        raise RuntimeError(f"transient failure {count}")
    return f"ok after {count}"


signup = restate.Workflow("ConfSignup")


@signup.main()
async def signup_run(ctx: restate.WorkflowContext, name: str) -> str:
    return f"welcome {name}"


tuned = restate.Service(
    "ConfTuned",
    inactivity_timeout=timedelta(seconds=30),
    journal_retention=timedelta(hours=5),
    invocation_retry_policy=InvocationRetryPolicy(
        initial_interval=timedelta(milliseconds=100), max_attempts=5, on_max_attempts="kill"
    ),
)


@tuned.handler(
    abort_timeout=timedelta(minutes=3),
    idempotency_retention=timedelta(hours=6),
    invocation_retry_policy=InvocationRetryPolicy(max_attempts=2, exponentiation_factor=3.0),
)
async def tuned_handler(ctx: restate.Context, name: str) -> str:
    return f"tuned {name}"


@tuned.handler(ingress_private=True)
async def internal(ctx: restate.Context, name: str) -> str:
    return f"internal {name}"


@tuned.handler()
async def relay(ctx: restate.Context, name: str) -> str:
    """Calls the private handler from inside: private means not reachable from the ingress only."""
    return await ctx.service_call(internal, name)


hidden = restate.Service("ConfHidden", ingress_private=True)


@hidden.handler()
async def hello(ctx: restate.Context, name: str) -> str:
    return f"hidden {name}"


echo = restate.Service("ConfEcho")


@echo.handler()
async def say(ctx: restate.Context, text: str) -> str:
    return await ctx.run("echo", lambda: f"echo {text}")


app = restate.app([flaky, signup, tuned, hidden])


def _signed_app() -> Any:
    """Only requests signed by the key in IDENTITY_PUBLIC_KEY are served."""
    key = os.environ.get(IDENTITY_KEY_ENV)
    return restate.app([echo], identity_keys=[key] if key else None)


signed_app = _signed_app()
