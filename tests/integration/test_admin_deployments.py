"""The admin API's deployment and service routes, run step by step against the real Restate
1.7.12 server and against Perdure's admin app (uvicorn, real registry over SQLite); every response
must match after ids and timestamps are normalized."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import restate
import uvicorn

from perdure.server.admin.app import create_admin_app
from perdure.server.invoker.h2client import H2Client
from perdure.server.registry import Registry
from perdure.server.storage.sqlite import SqliteStorage
from tests.support.paths import REPO_ROOT, restate_installed
from tests.support.ports import free_port, port_accepts
from tests.support.process import ManagedProcess
from tests.support.servers import RestateServer
from tests.support.services import NodeService

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.restate,
    pytest.mark.skipif(not restate_installed(), reason="real Restate server not installed"),
]

# --- the official Python SDK service both servers discover ---
greeter = restate.Service("AdmGreeter")


@greeter.handler()
async def greet(ctx: restate.Context, name: str) -> str:
    return f"Hello, {name}!"


counter = restate.VirtualObject("AdmCounter")


@counter.handler()
async def add(ctx: restate.ObjectContext, delta: int) -> int:
    return delta


@counter.handler(kind="shared")
async def get(ctx: restate.ObjectSharedContext) -> int:
    return 0


signup = restate.Workflow("AdmSignup")


@signup.main()
async def run(ctx: restate.WorkflowContext, email: str) -> str:
    return email


sdk_app = restate.app([greeter, counter, signup])

# --- an endpoint whose manifest the test changes between registrations ---
MANIFESTS_ENV = "PERDURE_TEST_MANIFESTS"
_BASE: dict[str, Any] = {
    "protocolMode": "BIDI_STREAM",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 7,
    "services": [
        {
            "name": "AdmSvc",
            "ty": "SERVICE",
            "handlers": [
                {
                    "name": "h",
                    "input": {"required": False, "contentType": "application/json"},
                    "output": {"contentType": "application/json", "setContentTypeIfEmpty": True},
                }
            ],
        }
    ],
}
_CHANGED = copy.deepcopy(_BASE)
_CHANGED["services"][0]["handlers"].append({"name": "h2", "input": {}, "output": {}})
_OPTIONS: dict[str, Any] = {
    "protocolMode": "REQUEST_RESPONSE",
    "minProtocolVersion": 5,
    "maxProtocolVersion": 7,
    "services": [
        {
            "name": "AdmOpt",
            "ty": "SERVICE",
            "documentation": "doc",
            "metadata": {"a": "b"},
            "journalRetention": 3_600_000,
            "idempotencyRetention": 7_200_000,
            "abortTimeout": 120_000,
            "retryPolicyMaxAttempts": 5,
            "retryPolicyOnMaxAttempts": "KILL",
            "handlers": [
                {
                    "name": "x",
                    "documentation": "hdoc",
                    "inactivityTimeout": 3000,
                    "retryPolicyInitialInterval": 10,
                    "input": {
                        "contentType": "application/json",
                        "jsonSchema": {"type": "object", "title": "Foo"},
                    },
                    "output": {"contentType": "text/plain", "setContentTypeIfEmpty": True},
                },
                {"name": "y", "ingressPrivate": True, "input": {"required": False}},
            ],
        },
        {
            "name": "AdmWf",
            "ty": "WORKFLOW",
            "handlers": [
                {"name": "run", "ty": "WORKFLOW", "workflowCompletionRetention": 6000},
                {"name": "q"},
            ],
        },
    ],
}
_BAD = {
    "noproto": {k: v for k, v in _BASE.items() if k != "protocolMode"},
    "oldver": {**_BASE, "minProtocolVersion": 1, "maxProtocolVersion": 4},
    "badname": {**_BASE, "services": [{**_BASE["services"][0], "name": "1bad"}]},
    "objwf": {
        **_BASE,
        "services": [
            {"name": "AdmObjWf", "ty": "VIRTUAL_OBJECT", "handlers": [{"name": "run", "ty": "WORKFLOW"}]}
        ],
    },
    "typechange": {**_BASE, "services": [{"name": "AdmSvc", "ty": "VIRTUAL_OBJECT", "handlers": []}]},
}

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def manifest_app(scope: Scope, receive: Receive, send: Send) -> None:
    """`/m/<name>/discover` answers the manifest stored under <name> in the JSON file."""
    if scope["type"] != "http":
        return
    manifests = json.loads(Path(os.environ[MANIFESTS_ENV]).read_text())
    parts = scope["path"].strip("/").split("/")
    if len(parts) == 3 and parts[0] == "m" and parts[2] == "discover" and parts[1] in manifests:
        ctype = manifests[parts[1]].get("content_type", "application/vnd.restate.endpointmanifest.v4+json")
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", ctype.encode()), (b"x-restate-server", b"probe/1.0")],
            }
        )
        body = json.dumps(manifests[parts[1]]["manifest"]).encode()
        await send({"type": "http.response.body", "body": body})
        return
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"nope"})


def _hypercorn(tmp: Path, name: str, target: str, env: dict[str, str]) -> ManagedProcess:
    port = free_port()
    argv = [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", target]
    proc = ManagedProcess(
        name,
        argv,
        tmp / f"{name}.log",
        env={**os.environ, **env},
        cwd=REPO_ROOT,
        ready=lambda: port_accepts(port),
    )
    proc.url = f"http://127.0.0.1:{port}"  # type: ignore[attr-defined]
    return proc


class PerdureAdmin:
    """Perdure's admin app under uvicorn in a thread with its own event loop, SQLite underneath."""

    def __init__(self, data_dir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._data_dir = data_dir
        self._server: uvicorn.Server | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        storage = SqliteStorage(self._data_dir)
        await storage.open()
        client = H2Client()
        try:
            registry = await Registry.load(storage)
            app = create_admin_app(
                registry, client, version="0.1.0", ingress_endpoint="http://127.0.0.1:8080/"
            )
            config = uvicorn.Config(
                app,
                host="127.0.0.1",
                port=self.port,
                log_level="warning",
                lifespan="off",
                timeout_keep_alive=75,
            )
            self._server = uvicorn.Server(config)
            await self._server.serve()
        finally:
            await client.aclose()
            await storage.close()

    def __enter__(self) -> PerdureAdmin:
        self._thread.start()
        deadline = 100
        while not port_accepts(self.port) and deadline:
            deadline -= 1
            threading.Event().wait(0.05)
        assert port_accepts(self.port), "perdure admin did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        self._thread.join(timeout=10)


class World:
    def __init__(self, tmp: Path, manifests: Path, manifest_url: str, sdk_url: str, ts_url: str) -> None:
        self.tmp, self.manifests = tmp, manifests
        self.manifest_url, self.sdk_url, self.ts_url = manifest_url, sdk_url, ts_url
        self.unreachable_port = free_port()

    def set_manifest(self, name: str, manifest: dict[str, Any], **extra: Any) -> None:
        current = json.loads(self.manifests.read_text())
        current[name] = {"manifest": manifest, **extra}
        self.manifests.write_text(json.dumps(current))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("admin")
    manifests = tmp / "manifests.json"
    manifests.write_text("{}")
    sdk = _hypercorn(tmp, "py-sdk", "tests.integration.test_admin_deployments:sdk_app", {})
    mserver = _hypercorn(
        tmp,
        "manifests",
        "tests.integration.test_admin_deployments:manifest_app",
        {MANIFESTS_ENV: str(manifests)},
    )
    ts = NodeService("tests/compat/services/greeter.cjs", env={"SERVICE_PREFIX": "AdmTs"}, log_dir=tmp)
    with sdk, mserver, ts:
        yield World(tmp, manifests, mserver.url, sdk.url, ts.url)  # type: ignore[attr-defined]


class Normalizer:
    """Replaces deployment ids by their order of appearance and timestamps by a marker."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def __call__(self, value: Any) -> Any:
        text = json.dumps(value, sort_keys=False)
        for dp in re.findall(r"dp_1[0-9A-Za-z]{22}", text):
            self.ids.setdefault(dp, f"dp#{len(self.ids) + 1}")
        text = re.sub(r"dp_1[0-9A-Za-z]{22}", lambda m: self.ids[m.group(0)], text)
        text = re.sub(r'"created_at": "[^"]+"', '"created_at": "<ts>"', text)
        # Restate's JSON decoder appends positions; an endpoint's Date header varies by the second.
        text = re.sub(r" at line \d+ column \d+", "", text)
        text = re.sub(r'\\"date\\": \\"[^"\\]*\\"', "<date>", text)
        return _sorted(json.loads(text))


def _sorted(value: Any) -> Any:
    """Restate lists services, handlers and deployments in hash order: sort them by name/uri."""
    if isinstance(value, dict):
        return {k: _sorted(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted(v) for v in value]
        if items and all(isinstance(v, dict) and ("name" in v or "uri" in v) for v in items):
            items.sort(key=lambda v: str(v.get("uri", v.get("name"))))
        return items
    return value


def run_flow(admin_url: str, world: World) -> list[Any]:
    """The register/list/describe/force/delete flow; returns normalized observations."""
    norm = Normalizer()
    out: list[Any] = []
    # Idle keep-alive connections are dropped by the client first, so a server closing an
    # idle one can never race a request on it (seen under CI load).
    http = httpx.Client(base_url=admin_url, timeout=30, limits=httpx.Limits(keepalive_expiry=1.0))

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        r = http.request(method, path, **kw)
        ctype = r.headers.get("content-type", "")
        body: Any = r.json() if ctype.startswith("application/json") else r.text
        out.append(
            {
                "req": f"{method} {path}",
                "status": r.status_code,
                "location": r.headers.get("location"),
                "ctype": ctype.split(";")[0] or None,
                "body": body,
            }
        )
        return r

    m = world.manifest_url
    world.set_manifest("v1", _BASE)
    world.set_manifest("v2", _BASE)
    world.set_manifest("opts", _OPTIONS)
    for name, manifest in _BAD.items():
        world.set_manifest(name, manifest)
    call("GET", "/health")
    first = call("POST", "/deployments", json={"uri": world.sdk_url}).json()["id"]
    call("POST", "/deployments", json={"uri": world.sdk_url})
    call("POST", "/v4/deployments", json={"uri": world.ts_url, "additional_headers": {"x-extra": "1"}})
    for path in (
        "/deployments",
        f"/deployments/{first}",
        "/services",
        "/services/AdmCounter",
        "/v4/services/AdmSignup/handlers",
        "/services/AdmCounter/handlers/get",
        "/services/Nope",
        "/services/AdmCounter/handlers/nope",
    ):
        call("GET", path)
    v1 = call("POST", "/deployments", json={"uri": f"{m}/m/v1"}).json()["id"]
    world.set_manifest("v1", _CHANGED)
    call("POST", "/deployments", json={"uri": f"{m}/m/v1"})
    call("GET", "/services/AdmSvc")
    call("POST", "/deployments", json={"uri": f"{m}/m/v1", "force": True, "dry_run": True})
    call("POST", "/deployments", json={"uri": f"{m}/m/v1", "force": True})
    v2 = call("POST", "/deployments", json={"uri": f"{m}/m/v2"}).json()["id"]
    call("POST", "/deployments", json={"uri": f"{m}/m/opts"})
    call("GET", "/services/AdmOpt")
    call("GET", "/services/AdmWf")
    call(
        "PATCH",
        "/services/AdmSvc",
        json={
            "public": False,
            "idempotency_retention": "2h",
            "inactivity_timeout": "90s",
            "abort_timeout": "PT5S",
        },
    )
    call("PATCH", "/services/AdmSvc", json={"workflow_completion_retention": "5m"})
    call("PATCH", "/services/AdmWf", json={"workflow_completion_retention": "2d"})
    call("PATCH", "/services/AdmSvc", json={"journal_retention": "nope"})
    call("PATCH", "/services/Nope", json={"public": True})
    call("DELETE", f"/deployments/{v2}")
    call("DELETE", f"/deployments/{v2}?force=false")
    call("DELETE", f"/deployments/{v2}?force=true")
    call("GET", "/services/AdmSvc")
    call("DELETE", f"/deployments/{v2}?force=true")
    call("DELETE", "/deployments/bogus?force=true")
    call("GET", "/deployments/bogus")
    call("DELETE", f"/deployments/{v1}?force=true")
    call("GET", "/services/AdmSvc")
    for name in _BAD:
        call("POST", "/deployments", json={"uri": f"{m}/m/{name}"})
    call("POST", "/deployments", json={"uri": f"{m}/m/missing"})
    call("POST", "/deployments", json={"uri": f"http://127.0.0.1:{world.unreachable_port}/"})
    call("POST", "/deployments", json={"url": "x"})
    call("POST", "/deployments", content=b"garbage", headers={"content-type": "application/json"})
    call("POST", "/deployments", content=b'{"uri": "http://127.0.0.1:1/"}')
    call("GET", "/v1/services")
    call("GET", "/deployments")
    http.close()
    return [norm(o) for o in out]


@pytest.fixture(scope="module")
def observations(world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    results: dict[str, list[Any]] = {}
    real = RestateServer(tmp_path_factory.mktemp("restate") / "data")
    real.start()
    try:
        results["restate"] = run_flow(real.admin_url, world)
    finally:
        real.kill()
    with PerdureAdmin(tmp_path_factory.mktemp("perdure") / "data") as ours:
        results["perdure"] = run_flow(ours.url, world)
    return results


def test_every_step_of_the_deployment_flow_matches_restate(observations: dict[str, list[Any]]) -> None:
    theirs, ours = observations["restate"], observations["perdure"]
    assert len(theirs) == len(ours)
    mismatches = [(t["req"], t, o) for t, o in zip(theirs, ours, strict=True) if t != o]
    assert not mismatches, "\n\n".join(
        f"{req}\nrestate: {json.dumps(t)}\nperdure: {json.dumps(o)}" for req, t, o in mismatches[:5]
    )


def test_version_reports_admin_api_range_and_ingress(tmp_path: Path) -> None:
    with PerdureAdmin(tmp_path / "data") as ours:
        body = httpx.get(f"{ours.url}/version").json()
        openapi = httpx.get(f"{ours.url}/v4/openapi").json()
    assert body["min_admin_api_version"] == 2 and body["max_admin_api_version"] == 4
    assert body["ingress_endpoint"] == "http://127.0.0.1:8080/"
    assert re.match(r"^\d+\.\d+\.\d+", body["version"])
    assert openapi["openapi"].startswith("3.1") and openapi["info"]["title"] == "Admin API"
    for path in ("/deployments", "/deployments/{deployment}", "/services/{service}/handlers/{handler}"):
        assert path in openapi["paths"]


def test_registrations_survive_a_restart_of_the_registry(tmp_path: Path, world: World) -> None:
    with PerdureAdmin(tmp_path / "data") as ours:
        created = httpx.post(f"{ours.url}/deployments", json={"uri": world.sdk_url}, timeout=30)
        assert created.status_code == 201
    with PerdureAdmin(tmp_path / "data") as again:
        listed = httpx.get(f"{again.url}/deployments").json()["deployments"]
        svc = httpx.get(f"{again.url}/services/AdmCounter").json()
    assert [d["id"] for d in listed] == [created.json()["id"]]
    assert svc["deployment_id"] == created.json()["id"] and svc["revision"] == 1
