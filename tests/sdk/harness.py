"""Fixtures' building blocks for the SDK suite: a server per module (real Restate by default),
scenario services served by hypercorn for each SDK under test, and small admin/ingress helpers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from tests.compat.services.ledger import LEDGER_ENV, Ledger
from tests.sdk.services.sdk import SDK_ENV
from tests.support import PythonService, register

SERVERS_ENV = "PERDURE_SDK_TEST_SERVERS"  # which servers the SDK suite runs against; default both
SCENARIOS = "tests.sdk.services.scenarios"
VERSIONED = "tests.sdk.services.versioned"


def sdk_servers() -> list[str]:
    return [k.strip() for k in os.environ.get(SERVERS_ENV, "restate,perdure").split(",") if k.strip()]


class Deployment:
    """One SDK process serving a scenario app, with the ledger its services write."""

    def __init__(
        self, sdk: str, root: Path, module: str = SCENARIOS, app_attr: str = "app", **env: str
    ) -> None:
        self.sdk = sdk
        self.root = root
        self.ledger = Ledger(root / "ledger.txt")
        self.module = module
        self.app_attr = app_attr
        self.env: dict[str, str] = {SDK_ENV: sdk, LEDGER_ENV: str(self.ledger.path), **env}
        self.process = self.spawn()

    def spawn(self, port: int | None = None, **extra_env: str) -> PythonService:
        env: Mapping[str, str] = {**self.env, **extra_env}
        name = f"{self.app_attr}-{self.sdk}-{extra_env.get('SCENARIO_VERSION', 'v1')}"
        return PythonService(self.module, self.app_attr, port=port, env=env, log_dir=self.root, name=name)

    def start(self, admin_url: str) -> Deployment:
        self.process.start()
        register(admin_url, self.process.url, force=True)
        return self

    def restart(self, **extra_env: str) -> None:
        """Kill the SDK process and start a new one on the same port (same deployment)."""
        port = self.process.port
        self.process.kill()
        self.process = self.spawn(port=port, **extra_env)
        self.process.start()

    def kill(self) -> None:
        self.process.kill()


async def query(admin_url: str, sql: str) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=10) as http:
        resp = await http.post(
            f"{admin_url}/query", json={"query": sql}, headers={"accept": "application/json"}
        )
        resp.raise_for_status()
        rows = resp.json()["rows"]
        assert isinstance(rows, list)
        return rows


async def wait_for_row(admin_url: str, sql: str, timeout_s: float = 20.0) -> dict[str, Any]:
    """Poll `sql` until it returns a row."""
    async with asyncio.timeout(timeout_s):
        while True:
            rows = await query(admin_url, sql)
            if rows:
                return rows[0]
            await asyncio.sleep(0.1)
