"""An https:// deployment: Perdure reaches the service over HTTP/2 with TLS (ALPN h2),
trusting the CA given by SSL_CERT_FILE. Uses a self-signed certificate made with openssl."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fixtures import running_server
from tests.support.servers import Server
from tests.support.services import PythonService

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")


def make_cert(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, PythonService]]:
    root = tmp_path_factory.mktemp("tls")
    cert, key = make_cert(root)
    saved = os.environ.get("SSL_CERT_FILE")
    os.environ["SSL_CERT_FILE"] = str(cert)  # the server process inherits it
    try:
        with (
            running_server("perdure", tmp_path_factory) as server,
            PythonService(
                "tests.compat.services.core",
                "app",
                env={"LEDGER_PATH": str(root / "ledger"), "GATE_DIR": str(root)},
                log_dir=root,
                hypercorn_args=["--certfile", str(cert), "--keyfile", str(key)],
            ) as svc,
        ):
            yield server, svc
    finally:
        if saved is None:
            os.environ.pop("SSL_CERT_FILE", None)
        else:
            os.environ["SSL_CERT_FILE"] = saved


def test_https_deployment_registers_and_serves_calls(tls: tuple[Server, PythonService]) -> None:
    server, svc = tls
    uri = svc.url.replace("http://", "https://")
    reg = httpx.post(f"{server.admin_url}/deployments", json={"uri": uri}, timeout=30)
    assert reg.status_code == 201, reg.text
    dep = httpx.get(f"{server.admin_url}/deployments/{reg.json()['id']}", timeout=10).json()
    assert dep["uri"].startswith("https://") and dep["http_version"] == "HTTP/2.0", dep
    resp = httpx.post(f"{server.ingress_url}/Greeter/greet", json="Tia", timeout=30)
    assert (resp.status_code, resp.json()) == (200, "Hello, Tia!"), resp.text
