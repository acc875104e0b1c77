"""A small synchronous client of Perdure's (and Restate's) admin API for the
`perdure` CLI: JSON requests, SQL queries, and errors that say whose fault
they are (the server refused, or it could not be reached)."""

from __future__ import annotations

import os
from typing import Any

import httpx

DEFAULT_ADMIN_URL = "http://127.0.0.1:9070"
REQUEST_TIMEOUT_S = 60.0
# The admin API's bearer token, if it requires one: Perdure's name, or the official CLI's.
TOKEN_ENV = ("PERDURE_ADMIN_TOKEN", "RESTATE_AUTH_TOKEN")


def admin_token() -> str | None:
    return next((os.environ[name] for name in TOKEN_ENV if os.environ.get(name)), None)


class AdminError(Exception):
    """The admin API answered with an error status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Unreachable(Exception):
    """No answer from the admin API (refused, timed out, not HTTP)."""


def _message(resp: httpx.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return resp.text.strip() or resp.reason_phrase
    message = data.get("message") if isinstance(data, dict) else None
    if isinstance(message, str):
        return message
    return resp.text.strip()


class AdminClient:
    def __init__(self, base_url: str, timeout_s: float = REQUEST_TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        token = admin_token()
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout_s, headers=headers)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            resp = self._http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach the admin API at {self.base_url}: {exc}") from exc
        if resp.status_code >= 400:
            raise AdminError(resp.status_code, _message(resp))
        return resp

    def get(self, path: str) -> Any:
        return self.request("GET", path).json()

    def post(self, path: str, body: Any) -> Any:
        resp = self.request("POST", path, body)
        return resp.json() if resp.content else None

    def patch(self, path: str) -> int:
        return self.request("PATCH", path).status_code

    def query(self, sql: str) -> list[dict[str, Any]]:
        """Rows of a SQL query (`POST /query`, JSON); NULL columns are absent from a row."""
        resp = self.request("POST", "/query", {"query": sql}, headers={"accept": "application/json"})
        rows = resp.json().get("rows")
        if not isinstance(rows, list):
            raise AdminError(resp.status_code, "the query answer has no rows")
        return rows


def sql_string(text: str) -> str:
    """`text` as a SQL string literal."""
    return "'" + text.replace("'", "''") + "'"
