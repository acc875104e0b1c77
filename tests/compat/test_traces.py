"""OpenTelemetry traces on each selected server, both configured the same way (Restate's
`tracing-endpoint` with `otlp+http://.../v1/traces`) and exporting to an OTLP/HTTP receiver written
here with opentelemetry-proto. The same requests give the same span names, parentage, trace ids,
links and required attributes on the real Restate server and on Perdure."""

from __future__ import annotations

import gzip
import http.server
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.compat.services.ledger import GATE_DIR_ENV, LABEL_ENV, LEDGER_ENV, events
from tests.compat.services.traced import FAILING_ATTEMPTS
from tests.compat.test_introspection import status_of
from tests.support import PythonService, Server, register, selected_servers
from tests.support.fixtures import running_server

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
WAIT_S = 30.0
STATUS_OK, STATUS_ERROR = 1, 2


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent: str
    attrs: dict[str, Any]
    status: int
    status_message: str
    links: list[tuple[str, str]]


@dataclass
class Receiver:
    """An OTLP/HTTP trace receiver on a loopback port: decodes every export into `spans`."""

    spans: list[Span] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, body: bytes) -> None:
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        with self.lock:
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append(_span(s))

    def find(self, pred: Callable[[Span], bool]) -> list[Span]:
        with self.lock:
            return [s for s in self.spans if pred(s)]

    def wait(self, what: str, pred: Callable[[Span], bool], n: int = 1) -> list[Span]:
        deadline = time.monotonic() + WAIT_S
        while len(found := self.find(pred)) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {n} {what}; got {found}")
            time.sleep(0.1)
        return found


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _span(s: Any) -> Span:
    return Span(
        name=s.name,
        trace_id=s.trace_id.hex(),
        span_id=s.span_id.hex(),
        parent=s.parent_span_id.hex(),
        attrs={a.key: _value(a.value) for a in s.attributes},
        status=s.status.code,
        status_message=s.status.message,
        links=[(link.trace_id.hex(), link.span_id.hex()) for link in s.links],
    )


def start_receiver() -> tuple[Receiver, http.server.ThreadingHTTPServer]:
    receiver = Receiver()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            receiver.add(body)
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return receiver, server


@dataclass
class Traced:
    server: Server
    receiver: Receiver
    root: Path


@pytest.fixture(scope="module", params=selected_servers())
def traced(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Traced]:
    kind = str(request.param)
    receiver, http_server = start_receiver()
    endpoint = f"otlp+http://127.0.0.1:{http_server.server_address[1]}/v1/traces"
    root = tmp_path_factory.mktemp(f"traces-{kind}")
    (root / "gates").mkdir()
    env = {LEDGER_ENV: str(root / "ledger.txt"), GATE_DIR_ENV: str(root / "gates"), LABEL_ENV: "main"}
    server_env = {"RESTATE_TRACING_ENDPOINT": endpoint, "PERDURE_TRACING_ENDPOINT": endpoint}
    try:
        with (
            mock.patch.dict(os.environ, server_env),
            running_server(kind, tmp_path_factory) as server,
            PythonService("tests.compat.services.core", "app", env=env, log_dir=root, name="core") as core,
            PythonService("tests.compat.services.traced", "app", env=env, log_dir=root, name="traced") as tr,
            PythonService("tests.compat.services.core", "rr_app", log_dir=root, name="core-rr") as broken,
        ):
            for svc in (core, tr, broken):
                register(server.admin_url, svc.url)
            yield Traced(server, receiver, root)
    finally:
        http_server.shutdown()


def traceparent(trace_id: str = TRACE_ID, span_id: str = CALLER_SPAN) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{span_id}-01"}


def spans_of(t: Traced, invocation_id: str, prefix: str) -> Callable[[Span], bool]:
    return lambda s: s.name.startswith(prefix) and s.attrs.get("restate.invocation.id") == invocation_id


def by_name(t: Traced, invocation_id: str) -> dict[str, list[Span]]:
    out: dict[str, list[Span]] = {}
    for s in t.receiver.find(lambda s: s.attrs.get("restate.invocation.id") == invocation_id):
        out.setdefault(s.name, []).append(s)
    return out


def test_a_call_is_traced_under_the_callers_traceparent(traced: Traced) -> None:
    resp = httpx.post(
        f"{traced.server.ingress_url}/Counter/t1/add", json=1, headers=traceparent(), timeout=60
    )
    assert resp.status_code == 200, resp.text
    inv = resp.headers["x-restate-id"]
    traced.receiver.wait("end span", spans_of(traced, inv, "invocation-end"))
    spans = by_name(traced, inv)
    name = "Counter/{key}/add"
    ingress = spans[f"ingress {name}"]
    # Restate gives the start span no invocation id attribute: find it as the ingress span's child.
    start = traced.receiver.find(
        lambda s: s.name == f"invocation-start {name}" and s.parent == ingress[0].span_id
    )
    attempts, end = spans[f"invocation-attempt {name}"], spans[f"invocation-end {name}"]
    assert len(ingress) == len(start) == len(end) == 1 and len(attempts) == 1
    for s in (*ingress, *start, *attempts, *end):
        assert s.trace_id == TRACE_ID
    assert ingress[0].parent == CALLER_SPAN
    assert attempts[0].parent == start[0].span_id and end[0].parent == start[0].span_id
    assert ingress[0].attrs["rpc.service"] == "Counter" and ingress[0].attrs["rpc.method"] == "add"
    assert ingress[0].attrs["restate.invocation.target"] == "Counter/t1/add"
    a = attempts[0].attrs
    assert a["rpc.system"] == "restate" and a["restate.deployment.id"].startswith("dp_")
    assert a["restate.deployment.address"].startswith("http://127.0.0.1:")
    assert a["restate.deployment.service_protocol_version"] >= 5
    assert attempts[0].status == STATUS_OK
    assert end[0].attrs["restate.invocation.result"] == "success"
    assert status_of(traced.server, inv)["trace_id"] == TRACE_ID


def test_every_attempt_gets_its_span_and_passes_its_context_to_the_service(traced: Traced) -> None:
    tag = uuid.uuid4().hex[:12]
    resp = httpx.post(
        f"{traced.server.ingress_url}/Traced/attempts", json=tag, headers=traceparent(), timeout=60
    )
    assert resp.status_code == 200, resp.text
    inv = resp.headers["x-restate-id"]
    traced.receiver.wait("end span", spans_of(traced, inv, "invocation-end"))
    attempts = sorted(
        traced.receiver.find(spans_of(traced, inv, "invocation-attempt Traced/attempts")),
        key=lambda s: s.status,
    )
    assert [s.status for s in attempts] == [STATUS_OK] + [STATUS_ERROR] * FAILING_ATTEMPTS
    assert all(s.status_message == "transient failure" for s in attempts[1:])
    received = [e.removeprefix("traceparent ") for e in events(traced.root / "ledger.txt", tag)]
    assert sorted(received) == sorted(f"00-{TRACE_ID}-{s.span_id}-01" for s in attempts)


def test_attempt_spans_are_exported_while_the_invocation_still_retries(traced: Traced) -> None:
    sent = httpx.post(
        f"{traced.server.ingress_url}/RrFlaky/run/send",
        json=uuid.uuid4().hex[:12],
        headers=traceparent(),
        timeout=30,
    )
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]
    failed = traced.receiver.wait(
        "failed attempts",
        lambda s: spans_of(traced, inv, "invocation-attempt RrFlaky/run")(s) and s.status == STATUS_ERROR,
        n=2,
    )
    assert status_of(traced.server, inv)["status"] != "completed"
    assert not traced.receiver.find(spans_of(traced, inv, "invocation-end"))
    assert len({s.trace_id for s in failed}) == 1


def test_a_one_way_send_from_the_ingress_stays_in_the_callers_trace(traced: Traced) -> None:
    # Restate 1.7.12 keeps an ingress /send in the caller's trace (start span under the ingress span,
    # no link); sends between services are the ones that start linked traces there.
    sent = httpx.post(
        f"{traced.server.ingress_url}/Greeter/greet/send", json="Ann", headers=traceparent(), timeout=30
    )
    assert sent.status_code == 202, sent.text
    inv = sent.json()["invocationId"]
    end = traced.receiver.wait("end span", spans_of(traced, inv, "invocation-end"))[0]
    ingress = traced.receiver.wait("ingress span", spans_of(traced, inv, "ingress Greeter/greet"))[0]
    start = traced.receiver.find(
        lambda s: s.name == "invocation-start Greeter/greet" and s.span_id == end.parent
    )
    assert len(start) == 1
    assert ingress.trace_id == start[0].trace_id == end.trace_id == TRACE_ID
    assert ingress.parent == CALLER_SPAN and start[0].parent == ingress.span_id


def test_a_service_to_service_call_puts_the_callees_spans_in_the_callers_trace(traced: Traced) -> None:
    # Restate 1.7.12 gives the callee a start span under the caller's attempt span; Perdure puts the
    # callee's attempt and end spans under the caller's start span (the processor, which creates
    # the callee, does not know the attempt's span). Both keep the whole call in one trace.
    resp = httpx.post(
        f"{traced.server.ingress_url}/Traced/call_greeter", json="Bea", headers=traceparent(), timeout=60
    )
    assert resp.status_code == 200, resp.text
    caller, callee = resp.headers["x-restate-id"], resp.json()
    traced.receiver.wait("callee end span", spans_of(traced, callee, "invocation-end"))
    traced.receiver.wait("callee attempt span", spans_of(traced, callee, "invocation-attempt"))
    traced.receiver.wait("caller end span", spans_of(traced, caller, "invocation-end"))
    callee_spans = by_name(traced, callee)
    caller_attempt = by_name(traced, caller)["invocation-attempt Traced/call_greeter"]
    for name in ("invocation-attempt Greeter/greet", "invocation-end Greeter/greet"):
        assert [s.trace_id for s in callee_spans[name]] == [TRACE_ID], name
    assert caller_attempt and caller_attempt[0].trace_id == TRACE_ID
