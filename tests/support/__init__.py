"""Test harness that runs real processes: Restate and Perdure servers, SDK services, ingress helpers."""

from tests.support.client import Ingress, SendResult, register
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
    "register",
    "selected_servers",
]
