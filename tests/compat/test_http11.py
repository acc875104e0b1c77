"""A deployment registered with `use_http_11: true` (served over HTTP/1.1, so
request-response) runs handlers with steps and a sleep, on both servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.client import Ingress
from tests.support.servers import Server
from tests.support.services import PythonService

CORE = "tests.compat.services.core"


@pytest.fixture(scope="module")
def http11_service(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PythonService]:
    log_dir = tmp_path_factory.mktemp("h11")
    ledger = log_dir / "ledger"
    with PythonService(
        CORE, "app", env={"LEDGER_PATH": str(ledger), "GATE_DIR": str(log_dir)}, log_dir=log_dir
    ) as svc:
        import httpx

        resp = httpx.post(
            f"{server.admin_url}/deployments",
            json={"uri": svc.url, "use_http_11": True, "force": True},
            timeout=30,
        )
        assert resp.status_code in (200, 201), resp.text
        dep = httpx.get(f"{server.admin_url}/deployments/{resp.json()['id']}", timeout=10).json()
        assert dep["http_version"] == "HTTP/1.1" and dep["protocol_type"] == "RequestResponse", dep
        yield svc


async def test_http11_deployment_greets(server: Server, http11_service: PythonService) -> None:
    async with Ingress(server.ingress_url) as ingress:
        resp = await ingress.call("Greeter/greet", "Ann")
    assert (resp.status_code, resp.json()) == (200, "Hello, Ann!"), resp.text
