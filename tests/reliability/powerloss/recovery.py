"""Start Perdure on a crash image and check that it finishes what the image holds.

Every stored invocation is attached to (so it must complete): an acknowledged call answers what
it answered before the power loss, every Greeter invocation greets its name, and each Counter
ends at the sum of the deltas of exactly the adds the image holds (each applied once).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from tests.reliability.powerloss.check import Stored
from tests.reliability.powerloss.workload import COUNTER_KEYS, Ack, Request
from tests.support.client import Ingress
from tests.support.servers import PerdureServer

ATTACH_CONCURRENCY = 32
RECOVERY_DEADLINE_S = 60.0


async def _attach_all(ing: Ingress, ids: list[str]) -> dict[str, tuple[int, bytes]]:
    gate = asyncio.Semaphore(ATTACH_CONCURRENCY)
    answers: dict[str, tuple[int, bytes]] = {}

    async def one(iid: str) -> None:
        async with gate:
            resp = await ing.attach(iid)
            answers[iid] = (resp.status_code, resp.content)

    async with asyncio.TaskGroup() as tg:
        for iid in ids:
            tg.create_task(one(iid))
    return answers


def _attach_problems(
    answers: dict[str, tuple[int, bytes]], by_id: dict[str, Request], acks: list[Ack]
) -> list[str]:
    problems: list[str] = []
    for iid, (status, body) in sorted(answers.items()):
        req = by_id[iid]
        expected = req.expected_output()
        if status != 200:
            problems.append(f"{req.rid} ({iid}) did not complete after recovery: {status} {body[:200]!r}")
        elif expected is not None and body != expected:
            problems.append(f"{req.rid} ({iid}) answered {body!r}, expected {expected!r}")
    for ack in acks:
        got = answers.get(ack.invocation_id)
        if ack.status == 200 and got is not None and got[1] != ack.output:
            problems.append(f"acknowledged call {ack.request.rid} answered {ack.output!r}, now {got[1]!r}")
    return problems


async def _counter_problems(ing: Ingress, stored_adds: list[Request]) -> list[str]:
    expected = {f"c{i}": 0 for i in range(COUNTER_KEYS)}
    for req in stored_adds:
        assert req.key is not None
        expected[req.key] += int(req.arg)
    problems: list[str] = []
    for key, total in sorted(expected.items()):
        resp = await ing.call(f"Counter/{key}/get")
        if resp.status_code == 404 and not stored_adds:
            continue  # the power cut came before the deployment was registered
        value = json.loads(resp.content) if resp.status_code == 200 else resp.text
        if value != total:
            problems.append(f"Counter {key} is {value}, but the image holds adds summing to {total}")
    return problems


async def recover_and_check(
    image_dir: Path, stored: dict[str, Stored], requests: list[Request], acks: list[Ack]
) -> list[str]:
    """Run Perdure on `image_dir` until every stored invocation completed; the problems found."""
    by_rid = {r.rid: r for r in requests}
    by_id = {iid: by_rid[s.idempotency_key] for iid, s in stored.items() if s.idempotency_key in by_rid}
    unknown = sorted(set(stored) - set(by_id))
    problems = [f"invocations nobody requested are stored: {unknown[:5]}"] if unknown else []
    server = PerdureServer(image_dir)
    try:
        server.start()
        async with Ingress(server.ingress_url) as ing, asyncio.timeout(RECOVERY_DEADLINE_S):
            answers = await _attach_all(ing, sorted(by_id))
            problems += _attach_problems(answers, by_id, acks)
            problems += await _counter_problems(ing, [r for r in by_id.values() if r.service == "Counter"])
    finally:
        server.kill()
    return problems
