"""HTTP/1.1 streams for deployments registered with `use_http_11`: such
endpoints serve request-response only, so the whole request body (Start and
the known journal) is sent at once and the response body is read as it
streams back. Same stream interface as the h2c client, so attempts do not
care which one they got. No task of its own: the exchange runs inside the
attempt's task, so cancelling the attempt cancels the request."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from perdure.server.invoker.h2client import ConnectError, ConnectionLost, H2Error

CONNECT_TIMEOUT_S = 10.0


class H1Stream:
    def __init__(self, client: httpx.AsyncClient, url: str, headers: list[tuple[str, str]]) -> None:
        self._client = client
        self._url = url
        self._headers = headers
        self._body: list[bytes] = []
        self._ended = False
        self._resp: httpx.Response | None = None
        self._chunks: AsyncIterator[bytes] | None = None

    def send(self, data: bytes) -> None:
        if self._ended:
            raise H2Error("request body already sent (HTTP/1.1 endpoints are request-response)")
        self._body.append(data)

    def end(self) -> None:
        self._ended = True

    async def response(self) -> tuple[int, list[tuple[str, str]]]:
        self._ended = True
        req = self._client.build_request(
            "POST", self._url, headers=self._headers, content=b"".join(self._body)
        )
        try:
            self._resp = await self._client.send(req, stream=True)
        except httpx.ConnectError as exc:
            raise ConnectError(str(exc) or "connection refused") from None
        except httpx.HTTPError as exc:
            raise ConnectionLost(str(exc) or type(exc).__name__) from None
        self._chunks = self._resp.aiter_raw()
        return self._resp.status_code, [(k.lower(), v) for k, v in self._resp.headers.items()]

    async def receive(self) -> bytes:
        assert self._chunks is not None and self._resp is not None, "response() first"
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            await self._resp.aclose()
            return b""
        except httpx.HTTPError as exc:
            await self._resp.aclose()
            raise ConnectionLost(str(exc) or type(exc).__name__) from None

    def reset(self, error_code: int = 8) -> None:
        """Nothing to send on HTTP/1.1; the attempt's cancellation drops the connection."""


class H1Client:
    """Keep-alive HTTP/1.1 connection pool (httpx)."""

    def __init__(self, *, connect_timeout_s: float = CONNECT_TIMEOUT_S) -> None:
        self._client = httpx.AsyncClient(
            http1=True, http2=False, timeout=httpx.Timeout(None, connect=connect_timeout_s)
        )

    async def request(
        self, url: str, method: str, headers: list[tuple[str, str]], *, end_stream: bool = False
    ) -> H1Stream:
        assert method == "POST"
        return H1Stream(self._client, url, headers)

    async def aclose(self) -> None:
        await self._client.aclose()
