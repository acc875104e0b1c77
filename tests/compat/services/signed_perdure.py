"""Perdure's SDK endpoint with `identity_keys`: the same ConfEcho service as configured.py,
served only to requests signed by the key in IDENTITY_PUBLIC_KEY."""

from __future__ import annotations

import os

import perdure as restate

IDENTITY_KEY_ENV = "IDENTITY_PUBLIC_KEY"

echo = restate.Service("ConfEcho")


@echo.handler()
async def say(ctx: restate.Context, text: str) -> str:
    return await ctx.run("echo", lambda: f"echo {text}")


signed_app = restate.app([echo], identity_keys=[os.environ[IDENTITY_KEY_ENV]])
