"""Deterministic handler programs for the simulated services.

A program is a generator: it yields operations (run a side effect, sleep,
read/write state, call or send to another service, use a workflow promise),
receives each operation's result, and returns the handler's output. Its
choices depend only on its input and on the results it receives, so replaying
a journal reproduces the same operations: the property real SDK handlers must
have. The client encodes a random plan in each invocation's input:
`<token>|<op>;<op>;...`; the token names the invocation in the simulation's
bookkeeping and is unique."""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from dataclasses import dataclass

from perdure.server.processor.model import Failure
from perdure.testing.simulation.schema import (
    COUNTER_KEYS,
    COUNTER_STATE_KEY,
    FLOW_KEYS,
    PROMISE_NAME,
    SCRATCH_STATE_KEY,
)


@dataclass(frozen=True, slots=True)
class Run:
    """`ctx.run`: a side effect whose result is journaled."""

    label: str


@dataclass(frozen=True, slots=True)
class Sleep:
    duration_ms: int


@dataclass(frozen=True, slots=True)
class GetState:
    key: bytes
    lazy: bool


@dataclass(frozen=True, slots=True)
class SetState:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class ClearState:
    key: bytes


@dataclass(frozen=True, slots=True)
class Call:
    service: str
    handler: str
    key: str
    parameter: bytes


@dataclass(frozen=True, slots=True)
class Send:
    service: str
    handler: str
    key: str
    parameter: bytes
    delay_ms: int


@dataclass(frozen=True, slots=True)
class GetPromise:
    name: str


@dataclass(frozen=True, slots=True)
class CompletePromise:
    name: str
    value: bytes


Op = Run | Sleep | GetState | SetState | ClearState | Call | Send | GetPromise | CompletePromise
Result = bytes | Failure | None
Output = bytes | Failure
Program = Generator[Op, Result, Output]


def parse_input(data: bytes) -> tuple[str, list[str]]:
    """Split an input into its token and plan."""
    token, _, plan = data.decode().partition("|")
    return token, [p for p in plan.split(";") if p]


def token_of(data: bytes) -> str:
    return data.decode().partition("|")[0]


def _show(r: Result) -> str:
    if isinstance(r, Failure):
        return f"F{r.code}"
    return "-" if r is None else r.decode()


def greet(data: bytes) -> Program:
    """Greeter.greet: runs its plan step by step; calls get the child token `<token>.<i>`."""
    token, plan = parse_input(data)
    seen: list[str] = []
    for i, step in enumerate(plan):
        name, *args = step.split(":")
        child = f"{token}.{i}"
        r: Result
        if name == "run":
            r = yield Run(f"{token}#{i}")
        elif name == "sleep":
            r = yield Sleep(int(args[0]))
        elif name == "add":
            r = yield Call("Counter", "add", args[0], f"{child}|".encode())
        elif name == "get":
            r = yield Call("Counter", "get", args[0], f"{child}|".encode())
        elif name == "sadd":
            r = yield Send("Counter", "add", args[0], f"{child}|run".encode(), int(args[1]))
        elif name == "greet":
            r = yield Call("Greeter", "greet", "", f"{child}|run".encode())
        elif name == "sgreet":
            r = yield Send("Greeter", "greet", "", f"{child}|sleep:20".encode(), int(args[0]))
        elif name == "signal":
            r = yield Call("Flow", "signal", args[0], f"{child}|".encode())
        else:
            raise ValueError(f"unknown step {step!r}")
        seen.append(_show(r))
    return f"{token}:{','.join(seen)}".encode()


def counter_add(data: bytes) -> Program:
    """Counter.add (exclusive): optional side effect and sleep, then read-modify-write
    with no suspension point between the write and the output."""
    token, plan = parse_input(data)
    for i, step in enumerate(plan):
        if step == "run":
            yield Run(f"{token}#{i}")
        elif step.startswith("sleep:"):
            yield Sleep(int(step.split(":")[1]))
        elif step == "scratch":  # a write undone at once: storage must apply both, in order
            yield SetState(SCRATCH_STATE_KEY, token.encode())
            yield ClearState(SCRATCH_STATE_KEY)
    raw = yield GetState(COUNTER_STATE_KEY, lazy="lazy" in plan)
    assert not isinstance(raw, Failure)
    value = int(raw or b"0") + 1
    yield SetState(COUNTER_STATE_KEY, str(value).encode())
    return str(value).encode()


def counter_get(data: bytes) -> Program:
    _, plan = parse_input(data)
    raw = yield GetState(COUNTER_STATE_KEY, lazy="lazy" in plan)
    assert not isinstance(raw, Failure)
    return raw or b"0"


def flow_run(data: bytes) -> Program:
    """Flow.run: a side effect, then wait for the promise `p`, then an optional sleep."""
    token, plan = parse_input(data)
    prep = yield Run(f"{token}#prep")
    p = yield GetPromise(PROMISE_NAME)
    for step in plan:
        if step.startswith("sleep:"):
            yield Sleep(int(step.split(":")[1]))
    return f"{token}:{_show(prep)}:{_show(p)}".encode()


def flow_signal(data: bytes) -> Program:
    token = token_of(data)
    r = yield CompletePromise(PROMISE_NAME, token.encode())
    return f"{token}:{_show(r)}".encode()


PROGRAMS: dict[tuple[str, str], Callable[[bytes], Program]] = {
    ("Greeter", "greet"): greet,
    ("Counter", "add"): counter_add,
    ("Counter", "get"): counter_get,
    ("Flow", "run"): flow_run,
    ("Flow", "signal"): flow_signal,
}

GREET_STEPS_MAX = 5
_STEP_WEIGHTS = {"run": 5, "sleep": 2, "add": 2, "get": 1, "sadd": 1, "greet": 1, "sgreet": 1, "signal": 1}
GREET_STEPS = tuple(_STEP_WEIGHTS)
# Steps that stay in the caller's partition (a plain callee lives beside its caller); the others
# reach a keyed target, which on a cluster may be another node's partition.
LOCAL_GREET_STEPS = ("run", "sleep", "greet", "sgreet")


def greet_plan(rng: random.Random, kinds: tuple[str, ...] = GREET_STEPS) -> str:
    """A random Greeter plan of at most GREET_STEPS_MAX steps, of the given kinds."""
    steps: list[str] = []
    weights = [_STEP_WEIGHTS[k] for k in kinds]
    for _ in range(rng.randint(0, GREET_STEPS_MAX)):
        kind = rng.choices(kinds, weights=weights)[0]
        if kind == "sleep":
            steps.append(f"sleep:{rng.randint(1, 400)}")
        elif kind in ("add", "get"):
            steps.append(f"{kind}:{rng.choice(COUNTER_KEYS)}")
        elif kind == "sadd":
            steps.append(f"sadd:{rng.choice(COUNTER_KEYS)}:{rng.choice((0, 0, rng.randint(1, 300)))}")
        elif kind == "sgreet":
            steps.append(f"sgreet:{rng.choice((0, rng.randint(1, 300)))}")
        elif kind == "signal":
            steps.append(f"signal:{rng.choice(FLOW_KEYS)}")
        else:
            steps.append(kind)
    return ";".join(steps)


def counter_plan(rng: random.Random) -> str:
    steps = []
    if rng.random() < 0.5:
        steps.append("run")
    if rng.random() < 0.2:
        steps.append(f"sleep:{rng.randint(1, 200)}")
    if rng.random() < 0.2:
        steps.append("scratch")
    if rng.random() < 0.3:
        steps.append("lazy")
    return ";".join(steps)


def flow_plan(rng: random.Random) -> str:
    return f"sleep:{rng.randint(1, 200)}" if rng.random() < 0.5 else ""
