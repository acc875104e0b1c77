"""Any node serves any request: a command for a partition another node owns is sent to that
node's admin API (`POST /cluster/forward`), which applies it there and answers with the reply.

Which partition a command is for: an invocation id's partition key, or the hash of an object,
workflow or idempotency key; a call to a plain service can go to any partition, so it stays on
this node (the processor gives it an id in a partition this node owns) unless this node owns
none. A node that owns the partition applies the command itself.

When no live owner is known (a lease expired and not taken yet: a takeover window, or a cluster
still starting) the request goes into the partition's durable inbox, the partition mailbox
(`processor/mailbox.py`): a send or an awakeable completion is written there, committed, and
answered at once (202 and the invocation id, as Restate answers once the request is in its log);
a call is written there too, then this node waits, while the client does, for the row to be
applied by the new owner and attaches to the invocation's outcome through that owner. Other
requests (attach, output, cancel/kill/purge, state, restart, Kafka records) change or read state
the owner has: they wait for an owner (at most `OWNER_WAIT_S`) and are forwarded then, else 503."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from perdure.protocol import messages_pb2 as pb
from perdure.server.cluster import wire
from perdure.server.cluster.node import ClusterNode
from perdure.server.processor import mail
from perdure.server.processor.commands import (
    Attach,
    ChangeSchedule,
    Command,
    CompleteAwakeable,
    Ingest,
    Invoke,
    ReplaceState,
    RestartAsNew,
    Terminate,
)
from perdure.server.processor.effects import Reply
from perdure.server.processor.identity import invocation_id_for
from perdure.server.processor.locality import Locality
from perdure.server.processor.mail import MailInvoke, MailSignal
from perdure.server.processor.schedules import timer_id
from perdure.server.processor.scheduling import OWNER_ACTIONS
from perdure.server.runtime import Abandoned, Runtime, Unavailable, wall_clock_ms
from perdure.server.storage.interface import StorageError

logging.getLogger("httpx").setLevel(logging.WARNING)  # not one line per forwarded request

FORWARD_PATH = "/cluster/forward"
_FORWARDED = (
    Invoke,
    Ingest,
    Attach,
    CompleteAwakeable,
    Terminate,
    ReplaceState,
    RestartAsNew,
    ChangeSchedule,
)
FORWARDED_HEADER = "x-perdure-forwarded-by"
CONNECT_TIMEOUT_S = 2.0
OWNER_WAIT_S = 30.0  # a takeover: lease TTL (6 s) + a placement step, with room for a loaded machine
OWNER_POLL_S = 0.2  # the node's view of the leases changes at each placement step
PENDING_POLL_S = 0.1
T = TypeVar("T")


class OwnerUnreachable(Unavailable):
    """The owner's address refused the connection: nothing of the request was sent."""


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
    if isinstance(cmd, ChangeSchedule) and cmd.action in OWNER_ACTIONS:
        return loc.of_id(timer_id(cmd.name))  # a schedule belongs to its name's partition
    return None


class ClusterRouter:
    def __init__(self, node: ClusterNode, partitions: Locality, *, token: str | None = None) -> None:
        self._node = node
        self._storage = node.storage
        self._runtime = node.runtime
        self.inboxed = 0  # requests written to a partition's inbox (no live owner)
        self._loc = partitions  # the partition arithmetic only; ownership comes from the store
        self._owned = node.owned
        headers = {FORWARDED_HEADER: node.name}
        if token:
            headers["authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(
            headers=headers, timeout=httpx.Timeout(None, connect=CONNECT_TIMEOUT_S)
        )

    async def route(self, cmd: Command, until: Coroutine[Any, Any, None] | None) -> Reply | None:
        """The reply of another node, or of the partition's inbox; None: apply `cmd` here (then
        `until` is left to the caller)."""
        owned = self._owned()
        p = command_partition(cmd, self._loc)
        if p is None:
            if owned or not isinstance(cmd, Invoke | Ingest):
                return None
            address = self._node.any_owner_address()
            if address is None:  # no node owns anything yet: any partition's inbox will do
                p = random.randrange(self._loc.count)
        elif p in owned:
            return None
        else:
            address = self._node.owner_address(p)
        return await _unless(self._deliver(cmd, p, address), until)

    async def _deliver(self, cmd: Command, p: int | None, address: str | None) -> Reply:
        if address is not None:
            try:
                return await self.forward(address, cmd)
            except OwnerUnreachable:
                if p is None:
                    raise
                # Nothing was sent (the owner's lease outlives it: a node just killed): as if
                # there were no owner.
        assert p is not None
        return await self._ownerless(cmd, p)

    async def _ownerless(self, cmd: Command, partition: int) -> Reply:
        if isinstance(cmd, Invoke):
            return await self._inbox_invoke(cmd, partition)
        if isinstance(cmd, CompleteAwakeable):
            ref = cmd.awakeable
            if cmd.failure is not None:
                f = pb.Failure(code=cmd.failure.code, message=cmd.failure.message)
                signal = MailSignal(ref.invocation.raw, ref.index, "failure", f.SerializeToString())
            else:
                value = pb.Value(content=cmd.value or b"").SerializeToString()
                signal = MailSignal(ref.invocation.raw, ref.index, "value", value)
            await self._post(partition, signal)
            return Reply(cmd.token, "ok", code=202)
        return await self._when_owned(cmd, partition)

    async def _post(self, partition: int, m: mail.Mail) -> int:
        try:
            seq = await self._storage.post_mail(partition, mail.encode(m))
        except StorageError as exc:
            raise Unavailable(f"no node owns the partition and its inbox cannot be written: {exc}") from exc
        self.inboxed += 1
        return seq

    async def _inbox_invoke(self, cmd: Invoke, partition: int) -> Reply:
        req = cmd.request
        iid = invocation_id_for(req.target, req.idempotency_key, lambda: self._loc.random_pk_in(partition))
        seq = await self._post(partition, MailInvoke(iid, req, None, "ingress"))
        if cmd.mode == "send":
            delayed = req.execution_time_ms if (req.execution_time_ms or 0) > wall_clock_ms() else None
            return Reply(
                cmd.token, "accepted", invocation_id=str(iid), status="Accepted", execution_time_ms=delayed
            )
        deadline = time.monotonic() + OWNER_WAIT_S
        while await self._pending(partition, seq):
            if time.monotonic() > deadline:
                raise Unavailable("the partition has no owner yet; the call is accepted, attach to it later")
            await asyncio.sleep(PENDING_POLL_S)
        reply = await self._when_owned(Attach(iid.raw, cmd.token, wait=True), partition)
        if req.idempotency_key is None:  # as a first call answers: no idempotency expiry
            reply = dataclasses.replace(reply, expires_at_ms=None)
        return reply

    async def _pending(self, partition: int, seq: int) -> bool:
        try:
            return await self._storage.mail_pending(partition, seq)
        except StorageError:
            return True

    async def _when_owned(self, cmd: Command, partition: int) -> Reply:
        """`cmd` applied by the partition's owner, once there is one (here or elsewhere)."""
        deadline = time.monotonic() + OWNER_WAIT_S
        tokened: Any = cmd  # every routed command has a token
        while True:
            if partition in self._owned():
                return await self._runtime.call_here(lambda token: dataclasses.replace(tokened, token=token))
            address = self._node.owner_address(partition)
            if address is not None:
                with contextlib.suppress(OwnerUnreachable):  # a dead owner's lease, not expired yet
                    return await self.forward(address, cmd)
            if time.monotonic() > deadline:
                raise Unavailable("no node owns the partition yet; try again")
            await asyncio.sleep(OWNER_POLL_S)

    async def forward(self, address: str, cmd: Command) -> Reply:
        try:
            resp = await self._client.post(address.rstrip("/") + FORWARD_PATH, content=wire.encode(cmd))
        except httpx.ConnectError as exc:
            raise OwnerUnreachable(f"the partition's owner ({address}) cannot be reached: {exc}") from exc
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


async def _unless(work: Coroutine[Any, Any, T], until: Coroutine[Any, Any, None] | None) -> T:
    """`work`'s result; when `until` (the client going away) completes first, `work` is cancelled
    (closing a forwarded request, so the owner stops waiting too) and `Abandoned` raised."""
    if until is None:
        return await work
    outcome: list[T] = []
    failed: list[Exception] = []

    async def guarded() -> None:
        try:
            outcome.append(await work)
        except Exception as exc:  # raised below, outside the task group
            failed.append(exc)

    async with asyncio.TaskGroup() as tg:
        job = tg.create_task(guarded())
        gone = tg.create_task(until)
        await asyncio.wait([job, gone], return_when=asyncio.FIRST_COMPLETED)
        job.cancel()
        gone.cancel()
    if failed:
        raise failed[0]
    if not outcome:
        raise Abandoned("the requester went away")
    return outcome[0]


def forward_routes(runtime: Runtime) -> list[BaseRoute]:
    """The owner's side: apply a command another node forwarded (never forwarded again)."""

    async def handle(request: Request) -> Response:
        try:
            cmd = wire.decode(await request.body())
        except wire.WireError as exc:
            return Response(str(exc), status_code=400)
        if not isinstance(cmd, _FORWARDED):
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
