"""Any node serves any request: a command for a partition another node owns is sent to that
node's admin API (`POST /cluster/forward`), which applies it there and answers with the reply.

Which partition a command is for: an invocation id's partition key, or the hash of an object,
workflow or idempotency key; a call to a plain service can go to any partition, so it stays on
this node (the processor gives it an id in a partition this node owns) unless this node owns
none. A node that owns the partition applies the command itself; when no live owner is known
(a lease moving or expired) the command is applied here too and the processor answers 503 (the
partition is not this node's): the client retries."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Coroutine
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from perdure.server.cluster import wire
from perdure.server.cluster.node import ClusterNode
from perdure.server.processor.commands import (
    Attach,
    Command,
    CompleteAwakeable,
    Ingest,
    Invoke,
    ReplaceState,
    RestartAsNew,
    Terminate,
)
from perdure.server.processor.effects import Reply
from perdure.server.processor.locality import Locality
from perdure.server.runtime import Abandoned, Runtime, Unavailable

logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per forwarded request

FORWARD_PATH = "/cluster/forward"
_FORWARDED = (Invoke, Ingest, Attach, CompleteAwakeable, Terminate, ReplaceState, RestartAsNew)
FORWARDED_HEADER = "x-perdure-forwarded-by"
CONNECT_TIMEOUT_S = 2.0


def command_partition(cmd: Command, loc: Locality) -> int | None:
    """The partition `cmd` is for; None when any partition will do (or it is not partitioned)."""
    if isinstance(cmd, Invoke | Ingest):
        t = cmd.request.target
        if t.key is not None:  # objects, workflows (and their idempotent calls) hash the key
            return loc.of_key(t.key)
        ikey = cmd.request.idempotency_key if isinstance(cmd, Invoke) else None
        return loc.of_key(ikey) if ikey is not None else None
    if isinstance(cmd, Attach | Terminate | RestartAsNew):
        return loc.of_id(cmd.raw_id)
    if isinstance(cmd, CompleteAwakeable):
        return loc.of_id(cmd.awakeable.invocation.raw)
    if isinstance(cmd, ReplaceState):
        return loc.of_key(cmd.key)
    return None


class ClusterRouter:
    def __init__(self, node: ClusterNode, partitions: Locality, *, token: str | None = None) -> None:
        self._node = node
        self._loc = partitions  # the partition arithmetic only; ownership comes from the store
        self._owned = node.owned
        headers = {FORWARDED_HEADER: node.name}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)
        )

    def remote(self, cmd: Command) -> str | None:
        owned = self._owned()
        p = command_partition(cmd, self._loc)
        if p is None:
            if owned or not isinstance(cmd, Invoke | Ingest):
                return None
            return self._node.any_owner_address()
        if p in owned:
            return None
        return self._node.owner_address(p)

    async def forward(self, address: str, cmd: Command, until: Coroutine[Any, Any, None] | None) -> Reply:
        try:
            resp = await _unless(
                self._client.post(address.rstrip("/") + FORWARD_PATH, content=wire.encode(cmd)), until
            )
        except httpx.HTTPError as exc:
            raise Unavailable(f"the partition's owner ({address}) cannot be reached: {exc}") from exc
        if resp.status_code != 200:
            raise Unavailable(f"the partition's owner ({address}) answered {resp.status_code}: {resp.text}")
        reply = wire.decode(resp.content)
        if not isinstance(reply, Reply):
            raise Unavailable("the partition's owner answered something that is not a reply")
        return reply

    async def aclose(self) -> None:
        await self._client.aclose()


async def _unless(
    work: Coroutine[Any, Any, httpx.Response], until: Coroutine[Any, Any, None] | None
) -> httpx.Response:
    """`work`'s result; when `until` (the client going away) completes first, `work` is cancelled
    (closing the forwarded request, so the owner stops waiting too) and `Abandoned` raised."""
    if until is None:
        return await work
    outcome: list[httpx.Response | httpx.HTTPError] = []

    async def guarded() -> None:
        try:
            outcome.append(await work)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    async with asyncio.TaskGroup() as tg:
        job = tg.create_task(guarded())
        gone = tg.create_task(until)
        await asyncio.wait([job, gone], return_when=asyncio.FIRST_COMPLETED)
        job.cancel()
        gone.cancel()
    if not outcome:
        raise Abandoned("the requester went away")
    if isinstance(outcome[0], httpx.HTTPError):
        raise outcome[0]
    return outcome[0]


def forward_routes(runtime: Runtime) -> list[BaseRoute]:
    """The owner's side: apply a command another node forwarded (never forwarded again)."""

    async def handle(request: Request) -> Response:
        try:
            cmd = wire.decode(await request.body())
        except wire.WireError as exc:
            return Response(str(exc), status_code=400)
        if not isinstance(
            cmd, Invoke | Ingest | Attach | CompleteAwakeable | Terminate | ReplaceState | RestartAsNew
        ):
            return Response("not a command that is forwarded", status_code=400)
        waits = (isinstance(cmd, Invoke) and cmd.mode == "call") or (isinstance(cmd, Attach) and cmd.wait)
        try:
            reply = await runtime.call_here(
                lambda token: dataclasses.replace(cmd, token=token),
                until=_disconnected(request) if waits else None,
            )
        except Unavailable as exc:
            return Response(str(exc), status_code=503)
        except Abandoned:
            return Response(status_code=499)
        return Response(wire.encode(reply), media_type="application/json")

    return [Route(FORWARD_PATH, handle, methods=["POST"])]


async def _disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
