"""Kill storm: SIGKILL and restart the Perdure server at seeded random moments while clients
drive official-SDK services through it, then check that durable execution kept its promise.

Each logical request has a fixed idempotency key and is retried until it gets a definitive
answer. Afterwards: every request was answered 200; the side-effect ledger shows each journaled
step's value used downstream exactly once (one distinct value per step, the one returned to the
client); every counter equals the sum of its acknowledged increments; no invocation is left
non-completed and no object key stays locked.

Run from the repository root (it uses the test harness in tests/support)::

    python -m perdure.testing.killstorm --invocations 2000 --kills 50 [--seed N]

The seed fixes the workload and the kill schedule; process timing still varies run to run, so a
seed reproduces the shape of a storm, not its exact interleaving.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.compat.services.ledger import LEDGER_ENV
from tests.support import PerdureServer, PythonService, Server, query, register

SERVICE_MODULE = "tests.reliability.services.storm"
CALL_TIMEOUT_S = 30.0
RETRY_PAUSE_S = (0.05, 0.3)
DEFINITIVE_FAILURES = frozenset((400, 404, 405, 409, 413, 415))


@dataclass(frozen=True, slots=True)
class StormConfig:
    """The storm's shape. `kill_gap_s` bounds the pause between a restart and the next kill."""

    seed: int
    invocations: int = 300
    kills: int = 8
    concurrency: int = 32
    counter_keys: int = 16
    kill_gap_s: tuple[float, float] = (0.4, 2.0)
    down_s: tuple[float, float] = (0.0, 0.3)
    restart_s_estimate: float = 1.0
    deadline_s: float = 80.0

    @property
    def release_span_s(self) -> float:
        """Requests are released over the expected kill period so kills land among them."""
        per_kill = (sum(self.kill_gap_s) + sum(self.down_s)) / 2 + self.restart_s_estimate
        return self.kills * per_kill


@dataclass(frozen=True, slots=True)
class LogicalRequest:
    """One request as the client sees it: always sent with the same idempotency key."""

    rid: str
    target: str
    body: dict[str, Any] | int
    counter: str | None
    delta: int
    steps: int
    release_at_s: float


@dataclass(slots=True)
class Outcome:
    status: int | None = None
    body: Any = None
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(slots=True)
class StormReport:
    config: StormConfig
    kills: int = 0
    duration_s: float = 0.0
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    reexecuted_steps: int = 0
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        retries = sum(max(0, o.attempts - 1) for o in self.outcomes.values())
        acked = sum(1 for o in self.outcomes.values() if o.status == 200)
        head = (
            f"kill storm seed={self.config.seed}: {len(self.outcomes)} requests, {acked} acknowledged, "
            f"{retries} client retries, {self.kills} kills, {self.reexecuted_steps} steps re-executed "
            f"before being journaled, {self.duration_s:.1f}s"
        )
        if self.ok:
            return head + "\nall invariants hold"
        shown = "\n  ".join(self.violations[:40])
        more = f"\n  ... and {len(self.violations) - 40} more" if len(self.violations) > 40 else ""
        return f"{head}\n{len(self.violations)} VIOLATIONS (seed {self.config.seed}):\n  {shown}{more}"


def plan(config: StormConfig) -> list[LogicalRequest]:
    """The seeded workload: multi-step chains (some with sleeps and counter calls) and counter adds."""
    rng = random.Random(config.seed)
    keys = [f"k{i}" for i in range(config.counter_keys)]
    spacing = config.release_span_s / max(1, config.invocations)
    out = []
    for i in range(config.invocations):
        rid = f"s{config.seed}-r{i}"
        release = i * spacing
        counter = rng.choice(keys)
        delta = rng.randint(1, 9)
        if rng.random() < 0.35:
            out.append(LogicalRequest(rid, f"Counter/{counter}/add", delta, counter, delta, 0, release))
            continue
        steps = rng.randint(2, 4)
        calls = rng.random() < 0.5
        body: dict[str, Any] = {
            "id": rid,
            "steps": steps,
            "sleep_ms": rng.choice([0, 0, 50, 300, 800]),
            "sleep_after": rng.randrange(steps),
            "counter": counter if calls else None,
            "delta": delta,
        }
        out.append(
            LogicalRequest(rid, "StormChain/run", body, counter if calls else None, delta, steps, release)
        )
    return out


async def _drive(http: httpx.AsyncClient, req: LogicalRequest, outcome: Outcome, rng: random.Random) -> None:
    """Send `req` until a definitive answer: 200 or a caller error; anything else is retried."""
    content = httpx.Request("POST", "/", json=req.body).content
    headers = {"content-type": "application/json", "idempotency-key": req.rid}
    while True:
        outcome.attempts += 1
        try:
            resp = await http.post(f"/{req.target}", content=content, headers=headers, timeout=CALL_TIMEOUT_S)
        except httpx.HTTPError as exc:
            outcome.errors.append(type(exc).__name__)
        else:
            if resp.status_code == 200 or resp.status_code in DEFINITIVE_FAILURES:
                outcome.status = resp.status_code
                outcome.body = resp.json() if resp.content else None
                return
            outcome.errors.append(f"HTTP {resp.status_code}")
        await asyncio.sleep(rng.uniform(*RETRY_PAUSE_S))


async def _clients(
    url: str, requests: list[LogicalRequest], report: StormReport, config: StormConfig
) -> None:
    rng = random.Random(config.seed ^ 0x5EED)
    started = time.monotonic()
    slots = asyncio.Semaphore(config.concurrency)
    limits = httpx.Limits(
        max_connections=config.concurrency * 2, max_keepalive_connections=config.concurrency
    )

    async def one(req: LogicalRequest) -> None:
        await asyncio.sleep(max(0.0, req.release_at_s - (time.monotonic() - started)))
        async with slots:
            await _drive(http, req, report.outcomes[req.rid], rng)

    async with httpx.AsyncClient(base_url=url, limits=limits) as http, asyncio.TaskGroup() as tg:
        for req in requests:
            report.outcomes[req.rid] = Outcome()
            tg.create_task(one(req))


async def _killer(
    server: Server, config: StormConfig, report: StormReport, clients_done: asyncio.Event
) -> None:
    """SIGKILL the server at seeded moments and start it again (same ports, same data)."""
    rng = random.Random(config.seed ^ 0xDEAD)
    while report.kills < config.kills and not clients_done.is_set():
        gap = rng.uniform(*config.kill_gap_s)
        try:
            await asyncio.wait_for(clients_done.wait(), timeout=gap)
            return
        except TimeoutError:
            pass
        server.kill()
        report.kills += 1
        await asyncio.sleep(rng.uniform(*config.down_s))
        await asyncio.to_thread(server.start)


Disruptor = Callable[[StormReport, asyncio.Event], Coroutine[Any, Any, None]]


async def storm(
    server: Server, ledger: Path, config: StormConfig, disrupt: Disruptor | None = None
) -> StormReport:
    """Run the storm against a started server with the storm services registered, then check it.
    `disrupt(report, clients_done)` replaces the server killer (it may fail the database instead)."""
    report = StormReport(config)
    requests = plan(config)
    started = time.monotonic()
    clients_done = asyncio.Event()

    async def clients() -> None:
        try:
            await _clients(server.ingress_url, requests, report, config)
        finally:
            clients_done.set()

    try:
        async with asyncio.timeout(config.deadline_s), asyncio.TaskGroup() as tg:
            tg.create_task(clients())
            if disrupt is None:
                tg.create_task(_killer(server, config, report, clients_done))
            else:
                tg.create_task(disrupt(report, clients_done))
    except TimeoutError:
        report.violations.append(f"storm not finished within {config.deadline_s}s")
    if not server.running:
        await asyncio.to_thread(server.start)
    report.duration_s = time.monotonic() - started
    await check(server, ledger, requests, report)
    return report


# --------------------------------------------------------------------------- invariants


def read_ledger(path: Path) -> dict[str, list[tuple[str, str, str]]]:
    """Ledger lines `rid event step value`, grouped by request id."""
    out: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split(" ")
        if len(parts) == 4:
            out[parts[0]].append((parts[1], parts[2], parts[3]))
    return out


def check_chain(req: LogicalRequest, outcome: Outcome, lines: list[tuple[str, str, str]]) -> list[str]:
    """One chain's ledger: per step one distinct value downstream, produced, and returned."""
    problems = []
    produced: dict[str, set[str]] = defaultdict(set)
    downstream: dict[str, set[str]] = defaultdict(set)
    for event, step, value in lines:
        (produced if event == "produce" else downstream)[step].add(value)
    returned = outcome.body if isinstance(outcome.body, list) else []
    if outcome.status == 200 and len(returned) != req.steps:
        problems.append(f"{req.rid}: returned {returned!r}, expected {req.steps} step values")
    for index in range(req.steps):
        step = f"s{index}"
        seen = downstream.get(step, set())
        if len(seen) > 1:
            problems.append(f"{req.rid}: step {step} used with {len(seen)} different values {sorted(seen)}")
        if not seen <= produced.get(step, set()):
            problems.append(f"{req.rid}: step {step} used value(s) never produced: {sorted(seen)}")
        if outcome.status == 200 and index < len(returned) and seen != {returned[index]}:
            problems.append(f"{req.rid}: step {step} returned {returned[index]} but used {sorted(seen)}")
    return problems


def reexecutions(lines: list[tuple[str, str, str]]) -> int:
    produced: dict[str, int] = defaultdict(int)
    for event, step, _ in lines:
        if event == "produce":
            produced[step] += 1
    return sum(n - 1 for n in produced.values())


async def check(server: Server, ledger: Path, requests: list[LogicalRequest], report: StormReport) -> None:
    """Append every broken invariant to `report.violations`."""
    ledger_lines = read_ledger(ledger)
    expected: dict[str, int] = defaultdict(int)
    for req in requests:
        outcome = report.outcomes[req.rid]
        if outcome.status != 200:
            report.violations.append(
                f"{req.rid}: no acknowledgement (status {outcome.status}, {outcome.errors[-3:]})"
            )
            continue
        if req.counter is not None:
            expected[req.counter] += req.delta
        if req.target == "StormChain/run":
            report.violations.extend(check_chain(req, outcome, ledger_lines.get(req.rid, [])))
            report.reexecuted_steps += reexecutions(ledger_lines.get(req.rid, []))
    async with httpx.AsyncClient(base_url=server.ingress_url, timeout=CALL_TIMEOUT_S) as http:
        for key, total in sorted(expected.items()):
            resp = await http.post(f"/Counter/{key}/get")
            if resp.status_code != 200 or resp.json() != total:
                report.violations.append(
                    f"counter {key}: {resp.status_code} {resp.text}, acknowledged {total}"
                )
    report.violations.extend(await asyncio.to_thread(_leftovers, server.admin_url))


def _leftovers(admin_url: str) -> list[str]:
    """Invocations not completed and keys still locked, read through the admin SQL API."""
    problems = []
    open_rows = query(
        admin_url, "SELECT id, target, status, last_failure FROM sys_invocation WHERE status != 'completed'"
    )
    problems += [f"invocation left {r.get('status')}: {r}" for r in open_rows]
    locked = query(admin_url, "SELECT service_name, service_key, invocation_id FROM sys_keyed_service_status")
    problems += [f"key still locked: {r}" for r in locked]
    return problems


# --------------------------------------------------------------------------- command line


async def run_storm(config: StormConfig, workdir: Path) -> StormReport:
    """Start a fresh Perdure server and the storm services in `workdir`, run the storm, stop all."""
    ledger = workdir / "ledger.txt"
    server = PerdureServer(workdir / "data")
    service = PythonService(
        SERVICE_MODULE, "app", env={LEDGER_ENV: str(ledger)}, log_dir=workdir, name="storm"
    )
    with server, service:
        register(server.admin_url, service.url)
        return await storm(server, ledger, config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invocations", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--seed", type=int, default=None, help="random when omitted (printed)")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workdir", type=Path, default=None, help="kept for inspection (default: temp)")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    kills = args.kills
    config = StormConfig(
        seed=seed,
        invocations=args.invocations,
        kills=kills,
        concurrency=args.concurrency,
        deadline_s=60.0 + kills * 6.0 + args.invocations * 0.05,
    )
    print(f"kill storm: seed {seed}, {config.invocations} invocations, {kills} kills", flush=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="perdure-killstorm-"))
    report = asyncio.run(run_storm(config, workdir))
    print(report.summary())
    print(f"logs and ledger in {workdir}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
