"""HTTP helpers for the admin API and the ingress, identical for Restate and Perdure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import httpx

REGISTER_TIMEOUT_S = 30.0
CALL_TIMEOUT_S = 60.0


class RegistrationFailed(RuntimeError):
    """POST /deployments did not answer 200/201."""


def register(admin_url: str, service_url: str, **opts: Any) -> str:
    """Register a deployment (`POST /deployments`, extra fields such as force=True) and return its id."""
    body = {"uri": service_url, **opts}
    resp = httpx.post(f"{admin_url}/deployments", json=body, timeout=REGISTER_TIMEOUT_S)
    if resp.status_code not in (200, 201):
        raise RegistrationFailed(f"register {service_url}: {resp.status_code} {resp.text}")
    deployment_id = resp.json()["id"]
    assert isinstance(deployment_id, str)
    return deployment_id


def query(admin_url: str, sql: str) -> list[dict[str, Any]]:
    """Run SQL on the admin API (`POST /query`, JSON rows; NULL columns are absent from a row)."""
    resp = httpx.post(
        f"{admin_url}/query", json={"query": sql}, headers={"accept": "application/json"}, timeout=30.0
    )
    resp.raise_for_status()
    rows = resp.json()["rows"]
    assert isinstance(rows, list)
    return rows


@dataclass(frozen=True, slots=True)
class SendResult:
    """The 202 answer of a `/send`: status code, parsed JSON body and the `x-restate-id` header."""

    status_code: int
    body: dict[str, Any]
    header_id: str | None

    @property
    def invocation_id(self) -> str:
        value = self.body["invocationId"]
        assert isinstance(value, str)
        return value


class Ingress:
    """Async client for one ingress: call, send, attach, output. Use as `async with Ingress(url) as ing`."""

    def __init__(self, url: str, timeout_s: float = CALL_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        self.http = httpx.AsyncClient(base_url=self.url, timeout=timeout_s, limits=limits)

    async def __aenter__(self) -> Ingress:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    @staticmethod
    def _headers(
        idempotency_key: str | None, headers: dict[str, str] | None, json_body: bool = True
    ) -> dict[str, str]:
        out = {"content-type": "application/json"} if json_body else {}
        if idempotency_key is not None:
            out["idempotency-key"] = idempotency_key
        out.update(headers or {})
        return out

    async def call(
        self,
        target: str,
        body: Any = None,
        idempotency_key: str | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> httpx.Response:
        """POST /{target} (e.g. "Greeter/greet"); `body` is sent as JSON, None sends no body at all."""
        content = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        hdrs = self._headers(idempotency_key, headers, json_body=content is not None)
        return await self.http.post(f"/{target}", content=content, headers=hdrs)

    async def send(
        self,
        target: str,
        body: Any = None,
        idempotency_key: str | None = None,
        delay: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> SendResult:
        """POST /{target}/send[?delay=…]; asserts nothing, returns status, body and x-restate-id."""
        params = {"delay": delay} if delay is not None else None
        content = None if body is None else json.dumps(body).encode()
        resp = await self.http.post(
            f"/{target}/send",
            content=content,
            params=params,
            headers=self._headers(idempotency_key, headers, json_body=content is not None),
        )
        parsed = resp.json() if resp.content else {}
        return SendResult(resp.status_code, parsed, resp.headers.get("x-restate-id"))

    async def attach(self, invocation_id: str) -> httpx.Response:
        """GET /restate/invocation/{id}/attach: blocks until the invocation completes."""
        return await self.http.get(f"/restate/invocation/{invocation_id}/attach")

    async def output(self, invocation_id: str) -> httpx.Response:
        """GET /restate/invocation/{id}/output: the result, or 470 while it is still running."""
        return await self.http.get(f"/restate/invocation/{invocation_id}/output")
