"""Access control (Perdure only: Restate's open-source server has none): separate bearer tokens
for the admin API and the ingress, 401 with a clear body without them, the official CLI with
RESTATE_AUTH_TOKEN, and HTTPS on both listeners from certificate and key files."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_tls_deployment import make_cert, pytestmark  # noqa: F401 (needs openssl)
from tests.support import PythonService
from tests.support.paths import perdure_executable, restate_cli_binary
from tests.support.servers import PerdureServer, Server, make_server

ADMIN_TOKEN = "admin-secret-1"
INGRESS_TOKEN = "ingress-secret-2"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, PythonService]]:
    root = tmp_path_factory.mktemp("guarded")
    env = {"PERDURE_ADMIN_TOKEN": ADMIN_TOKEN, "PERDURE_INGRESS_TOKEN": INGRESS_TOKEN}
    with (
        make_server("perdure", root / "data", env=env) as server,
        PythonService("tests.compat.services.core", "app", log_dir=root) as svc,
    ):
        register_with_token(server.admin_url, svc.url)
        yield server, svc


def register_with_token(admin_url: str, uri: str) -> None:
    resp = httpx.post(
        f"{admin_url}/deployments",
        json={"uri": uri},
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=30,
    )
    assert resp.status_code in (200, 201), resp.text


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_admin_api_refuses_requests_without_its_token(guarded: tuple[Server, PythonService]) -> None:
    server, _ = guarded
    missing = httpx.get(f"{server.admin_url}/services", timeout=10)
    assert missing.status_code == 401
    assert missing.json() == {
        "message": "the admin API requires a token: send 'authorization: Bearer <token>'",
        "restate_code": None,
    }
    assert missing.headers["www-authenticate"].startswith("Bearer")
    for wrong in ("nope", INGRESS_TOKEN, ADMIN_TOKEN + "x", ADMIN_TOKEN[:-1]):
        resp = httpx.get(f"{server.admin_url}/services", headers=_bearer(wrong), timeout=10)
        assert resp.status_code == 401
        assert "token is wrong" in resp.json()["message"]
    ok = httpx.get(f"{server.admin_url}/services", headers=_bearer(ADMIN_TOKEN), timeout=10)
    assert ok.status_code == 200
    assert "Greeter" in {s["name"] for s in ok.json()["services"]}
    # Health stays open for load balancers.
    assert httpx.get(f"{server.admin_url}/health", timeout=10).status_code == 200


def test_ingress_refuses_calls_without_its_token(guarded: tuple[Server, PythonService]) -> None:
    server, _ = guarded
    url = f"{server.ingress_url}/Greeter/greet"
    missing = httpx.post(url, json="Ann", timeout=10)
    assert missing.status_code == 401
    assert missing.json() == {
        "code": 401,
        "message": "the ingress requires a token: send 'authorization: Bearer <token>'",
        "source": "ingress",
    }
    assert httpx.post(url, json="Ann", headers=_bearer(ADMIN_TOKEN), timeout=10).status_code == 401
    ok = httpx.post(url, json="Ann", headers=_bearer(INGRESS_TOKEN), timeout=30)
    assert ok.status_code == 200, ok.text
    assert ok.json() == "Hello, Ann!"


def _cli(binary: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_official_and_perdure_clis_work_with_restate_auth_token(
    guarded: tuple[Server, PythonService], tmp_path: Path
) -> None:
    server, _ = guarded
    base = {"RESTATE_ADMIN_URL": server.admin_url, "RESTATE_CLI_CONFIG_HOME": str(tmp_path), "NO_COLOR": "1"}
    base.pop("RESTATE_AUTH_TOKEN", None)
    refused = _cli(restate_cli_binary(), ["services", "list"], base)
    assert refused.returncode != 0
    listed = _cli(restate_cli_binary(), ["services", "list"], {**base, "RESTATE_AUTH_TOKEN": ADMIN_TOKEN})
    assert listed.returncode == 0, listed.stderr
    assert "Greeter" in listed.stdout
    ours = _cli(
        perdure_executable(),
        ["services", "--admin-url", server.admin_url, "--json"],
        {"RESTATE_AUTH_TOKEN": ADMIN_TOKEN},
    )
    assert ours.returncode == 0, ours.stderr
    assert "Greeter" in ours.stdout
    # `perdure backup` is an operator command like the others: refused without the token.
    dest = tmp_path / "backup"
    unauthorized = _cli(perdure_executable(), ["backup", str(dest), "--admin-url", server.admin_url], {})
    assert unauthorized.returncode == 1 and "401" in unauthorized.stderr
    backed_up = _cli(
        perdure_executable(),
        ["backup", str(dest), "--admin-url", server.admin_url, "--json"],
        {"PERDURE_ADMIN_TOKEN": ADMIN_TOKEN},
    )
    assert backed_up.returncode == 0, backed_up.stderr
    assert (dest / "manifest.json").is_file()


class TlsPerdureServer(PerdureServer):
    """Perdure with HTTPS on both listeners; health checked against the self-signed CA."""

    def __init__(self, data_dir: Path, cert: Path, key: Path) -> None:
        self.ca = cert
        env = {
            "PERDURE_INGRESS_TLS_CERT_FILE": str(cert),
            "PERDURE_INGRESS_TLS_KEY_FILE": str(key),
            "PERDURE_ADMIN_TLS_CERT_FILE": str(cert),
            "PERDURE_ADMIN_TLS_KEY_FILE": str(key),
        }
        super().__init__(data_dir, env=env)

    @property
    def ingress_url(self) -> str:
        return f"https://127.0.0.1:{self.ingress_port}"

    @property
    def admin_url(self) -> str:
        return f"https://127.0.0.1:{self.admin_port}"

    def _is_ready(self) -> bool:
        try:
            return httpx.get(f"{self.admin_url}/health", verify=str(self.ca), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False


def test_both_listeners_serve_https_from_certificate_files(tmp_path: Path) -> None:
    cert, key = make_cert(tmp_path)
    with (
        TlsPerdureServer(tmp_path / "data", cert, key) as server,
        PythonService("tests.compat.services.core", "app", log_dir=tmp_path) as svc,
    ):
        with httpx.Client(verify=str(cert), timeout=30) as http:
            resp = http.post(f"{server.admin_url}/deployments", json={"uri": svc.url})
            assert resp.status_code == 201, resp.text
            call = http.post(f"{server.ingress_url}/Greeter/greet", json="Tls")
            assert call.status_code == 200, call.text
            assert call.json() == "Hello, Tls!"
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{server.admin_port}/health", timeout=5)


def test_perdure_server_refuses_half_a_tls_configuration(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(perdure_executable()), "server", "--data-dir", str(tmp_path / "d")],
        env={**os.environ, "PERDURE_ADMIN_TLS_CERT_FILE": str(tmp_path / "cert.pem")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2
    assert "admin TLS needs both a certificate file and a key file" in proc.stderr
