"""Serve an example app with hypercorn on 127.0.0.1:$PORT (default 9080), h2c included."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config


def serve(app: Any) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{os.environ.get('PORT', '9080')}"]
    asyncio.run(hypercorn_serve(app, config))
