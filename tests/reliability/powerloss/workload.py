"""The load driven at the recorded server: calls and sends, each with its own idempotency key, to
the official-SDK `Greeter` service and `Counter` object of tests/compat/services/core.py.

Every answer that acknowledges durable work is kept with the moment it was sent and received
(CLOCK_MONOTONIC, the recorder's clock): a call's 200 (the invocation completed, its output
stored) and a send's 202 (the invocation stored).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.client import Ingress

COUNTER_KEYS = 4
DELTA_MAX = 9
DELAY_MS_MAX = 1500
REQUEST_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class Request:
    """One logical request; `rid` is also its idempotency key."""

    rid: str
    service: str  # "Greeter" or "Counter"
    key: str | None
    send: bool
    arg: Any  # a name for Greeter, a delta for Counter
    delay_ms: int | None = None  # a delayed send: a durable timer starts the invocation

    @property
    def target(self) -> str:
        return "Greeter/greet" if self.key is None else f"Counter/{self.key}/add"

    def expected_output(self) -> bytes | None:
        """The output the service must produce, when it does not depend on ordering."""
        return json.dumps(f"Hello, {self.arg}!").encode() if self.service == "Greeter" else None


@dataclass(frozen=True, slots=True)
class Ack:
    """An answer that promised durability."""

    request: Request
    invocation_id: str
    status: int  # 200 (call completed) or 202 (send accepted)
    output: bytes  # a call's response body; empty for a send
    sent_ns: int
    acked_ns: int


def save_acks(path: Path, acks: list[Ack]) -> None:
    """Keep the acknowledgements of a run next to its log, for replay.py."""
    rows = [{**asdict(a), "request": asdict(a.request), "output": a.output.hex()} for a in acks]
    path.write_text(json.dumps(rows, indent=0))


def load_acks(path: Path) -> list[Ack]:
    rows = json.loads(path.read_text())
    return [
        Ack(**{**r, "request": Request(**r["request"]), "output": bytes.fromhex(r["output"])}) for r in rows
    ]


def plan(seed: int, count: int) -> list[Request]:
    """A seeded mix: half Greeter, half Counter adds over a few keys; a third of them sends, half
    of those delayed."""
    rng = random.Random(seed)
    out: list[Request] = []
    for i in range(count):
        send = rng.random() < 1 / 3
        delay_ms = rng.randint(1, DELAY_MS_MAX) if send and rng.random() < 0.5 else None
        if rng.random() < 0.5:
            out.append(Request(f"pl-{seed}-{i}", "Greeter", None, send, f"n{i}", delay_ms))
        else:
            key = f"c{rng.randrange(COUNTER_KEYS)}"
            out.append(Request(f"pl-{seed}-{i}", "Counter", key, send, rng.randint(1, DELTA_MAX), delay_ms))
    return out


async def issue(ing: Ingress, req: Request) -> Ack | None:
    """Send one request; the Ack if the server acknowledged it, None otherwise."""
    sent_ns = time.monotonic_ns()
    try:
        if req.send:
            delay = None if req.delay_ms is None else f"{req.delay_ms}ms"
            sent = await ing.send(req.target, req.arg, idempotency_key=req.rid, delay=delay)
            if sent.status_code != 202:
                return None
            return Ack(req, sent.invocation_id, 202, b"", sent_ns, time.monotonic_ns())
        resp = await ing.call(req.target, req.arg, idempotency_key=req.rid)
    except (httpx.HTTPError, ValueError):
        return None  # the server died under this request: not acknowledged
    iid = resp.headers.get("x-restate-id")
    if resp.status_code != 200 or iid is None:
        return None
    return Ack(req, iid, 200, resp.content, sent_ns, time.monotonic_ns())


async def drive(url: str, requests: list[Request], concurrency: int, acks: list[Ack]) -> None:
    """Issue `requests` from `concurrency` workers, appending acknowledgements to `acks`, until
    they run out or the server stops answering (the caller kills it and cancels this)."""
    pending: Iterator[Request] = iter(requests)

    async def worker(ing: Ingress) -> None:
        for req in pending:
            ack = await issue(ing, req)
            if ack is not None:
                acks.append(ack)

    async with Ingress(url, timeout_s=REQUEST_TIMEOUT_S) as ing, asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker(ing))
