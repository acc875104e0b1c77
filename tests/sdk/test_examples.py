"""The examples in examples/ run against the real server as their README says."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import Ingress, PythonService, Server, register

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def examples(
    sdk_server: Server, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PythonService]]:
    logs = tmp_path_factory.mktemp("examples")
    started = {
        name: PythonService(f"examples.{name}", log_dir=logs) for name in ("greeter", "counter", "signup")
    }
    try:
        for service in started.values():
            service.start()
            register(sdk_server.admin_url, service.url)
        yield started
    finally:
        for service in started.values():
            service.kill()


async def test_greeter_counter_and_signup_examples(
    sdk_server: Server, examples: dict[str, PythonService]
) -> None:
    async with Ingress(sdk_server.ingress_url, timeout_s=30) as ingress:
        assert (await ingress.call("Greeter/greet", "Ann")).json() == "Hello, Ann!"
        assert (await ingress.call("Counter/c1/add", 5)).json() == 5
        assert (await ingress.call("Counter/c1/add", 2)).json() == 7
        assert (await ingress.call("Counter/c1/get")).json() == 7

        sent = await ingress.send("Signup/ann/run", {"name": "Ann", "email": "ann@example.com"})
        assert sent.status_code == 202
        log = Path(examples["signup"].log_path)
        secret = None
        async with asyncio.timeout(20):
            while secret is None:
                found = re.search(r"click with secret (\S+)", log.read_text())
                secret = found.group(1) if found else None
                await asyncio.sleep(0.05)
        assert (await ingress.call("Signup/ann/status")).json() == "waiting for click"
        assert (await ingress.call("Signup/ann/click", secret)).status_code == 200
        out = await ingress.attach(sent.invocation_id)
        assert out.json() == "Ann verified"
