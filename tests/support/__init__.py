"""Test harness that runs real processes: Restate and Perdure servers, SDK services, ingress helpers.

Typical use (fixtures `server`, parametrized over restate/perdure, and `restate_server` come from
tests/conftest.py; select servers with PERDURE_TEST_SERVERS=restate or `-k restate`)::

    def test_greets(server: Server, tmp_path: Path) -> None:
        with PythonService("tests.compat.services.core", "app", log_dir=tmp_path) as svc:
            register(server.admin_url, svc.url)
            resp = httpx.post(f"{server.ingress_url}/Greeter/greet", json="Sarah")

    async with Ingress(server.ingress_url) as ing:       # call / send / attach / output
        sent = await ing.send("Greeter/greet", "Ann")
        result = await ing.attach(sent.invocation_id)

Processes run in their own process group with output in a log file; `kill()` is SIGKILL of the
group, `restart()` keeps ports and data, and a failing test prints the tail of every live log.
"""

from tests.support.client import Ingress, SendResult, query, register
from tests.support.ports import free_port
from tests.support.process import ManagedProcess, live_processes
from tests.support.servers import PerdureServer, RestateServer, Server, make_server, selected_servers
from tests.support.services import NodeService, PythonService

__all__ = [
    "Ingress",
    "ManagedProcess",
    "NodeService",
    "PerdureServer",
    "PythonService",
    "RestateServer",
    "SendResult",
    "Server",
    "free_port",
    "live_processes",
    "make_server",
    "query",
    "register",
    "selected_servers",
]
