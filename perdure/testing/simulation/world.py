"""The simulated world: a seeded scheduler around one partition processor.

Durable: the MemoryStorage. Volatile (lost on a crash): the Processor, the
command queue, the armed timers, the SDK attempts and the waiting clients.
Each step picks one action at random: a client submits an invocation, the
network delivers one SDK message, an SDK attempt runs, the processor runs one
batch (apply, take, commit, release), the clock jumps to the next timer, the
processor crashes, a commit fails, or an admin terminates an invocation. The
same seed always produces the same run."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import (
    AttemptFailed,
    Command,
    Invoke,
    InvokeRequest,
    SdkMessage,
    Terminate,
    Timer,
    TimerFired,
)
from perdure.server.processor.effects import (
    AbortAttempt,
    ArmTimer,
    Effect,
    Reply,
    SendToAttempt,
    StartAttempt,
)
from perdure.server.processor.model import Target
from perdure.server.processor.processor import Processor
from perdure.server.storage.interface import StorageError
from perdure.server.storage.memory import MemoryStorage
from perdure.testing.simulation import programs as pg
from perdure.testing.simulation.determinism import seeded_ids
from perdure.testing.simulation.invariants import Checker, ClientRequest
from perdure.testing.simulation.schema import COUNTER_KEYS, FLOW_KEYS, SIM_SCHEMA, SimSchema
from perdure.testing.simulation.sdk import JournalMismatch, SimAttempt
from perdure.testing.simulation.violation import Violation

EPOCH_MS = 1_700_000_000_000
TRACE_LINES_MAX = 80


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Length of a run and the odds of each action and fault."""

    steps: int = 300
    quiesce_steps_max: int = 20_000
    w_submit: int = 6
    w_deliver: int = 25
    w_sdk: int = 20
    w_batch: int = 12
    w_timer: int = 3
    w_crash: int = 1
    w_storage_fault: int = 1
    w_terminate: int = 1
    sdk_error_p: float = 0.04
    sdk_transport_failure_p: float = 0.03
    suspend_p: float = 0.3


@dataclass(slots=True)
class Stats:
    batches: int = 0
    crashes: int = 0
    storage_faults: int = 0
    attempts: int = 0
    suspensions: int = 0
    sdk_errors: int = 0
    transport_failures: int = 0
    terminations: int = 0
    timers_fired: int = 0
    runs_executed: int = 0
    invocations: int = 0
    by_outcome: dict[str, int] = field(default_factory=dict)


def greeter() -> Target:
    return Target("Greeter", "greet", None, "service", None)


def counter(handler: str, key: str) -> Target:
    return Target("Counter", handler, key, "virtual_object", "exclusive" if handler == "add" else "shared")


def flow(handler: str, key: str) -> Target:
    return Target("Flow", handler, key, "workflow", "workflow" if handler == "run" else "shared")


def fingerprint_of(st: MemoryStorage, step_no: int, now_ms: int) -> str:
    """A digest of a store's durable state at a step and time."""
    h = hashlib.sha256()
    for part in (
        sorted(st.invocations.items()),
        sorted((raw, sorted(j.items())) for raw, j in st.journal.items()),
        sorted((k, sorted(v.items())) for k, v in st.state.items()),
        sorted(st.promises.items()),
        step_no,
        now_ms,
    ):
        h.update(repr(part).encode())
    return h.hexdigest()


class World:
    greet_steps: tuple[str, ...] = pg.GREET_STEPS  # what a Greeter plan may do

    def __init__(self, seed: int, config: SimConfig | None = None, schema: SimSchema = SIM_SCHEMA) -> None:
        self.seed = seed
        self.config = config or SimConfig()
        self.schema = schema
        self.rng = random.Random(seed)
        self.id_rng = random.Random(seed * 7_919 + 17)
        self.now_ms = EPOCH_MS
        self.storage = MemoryStorage()
        self.processor = Processor(self.storage, schema)
        self.queue: deque[Command] = deque()
        self.timers: dict[Timer, None] = {}  # armed, in arming order (no hash-ordered sets)
        self.attempts: dict[bytes, SimAttempt] = {}
        self.clients: dict[int, ClientRequest] = {}
        self.known: dict[bytes, None] = {}  # invocation ids an admin could name
        self.idempotent_inputs: dict[tuple[str, str | None, str, str], bytes] = {}
        self.storage_fault_armed = False
        self.step_no = 0
        self.trace: deque[str] = deque(maxlen=TRACE_LINES_MAX)
        self.stats = Stats()
        self.check = Checker(self)
        self._tokens = itertools.count(1)
        self._names = itertools.count(1)

    # ------------------------------------------------------------------ the run

    def run(self) -> None:
        with seeded_ids(self.id_rng):
            self.recover()
            for _ in range(self.config.steps):
                self.step_no += 1
                self.step()
            self.quiesce()

    def step(self) -> None:
        c = self.config
        actions: list[Callable[[], None]] = [self.act_submit, self.act_crash, self.act_storage_fault]
        weights = [c.w_submit, c.w_crash, c.w_storage_fault]
        if any(a.outbound for a in self.attempts.values()):
            actions.append(self.act_deliver)
            weights.append(c.w_deliver)
        if any(a.runnable() for a in self.attempts.values()):
            actions.append(self.act_sdk)
            weights.append(c.w_sdk)
        if self.queue:
            actions.append(self.act_batch)
            weights.append(c.w_batch)
        if self.timers:
            actions.append(self.act_timer)
            weights.append(c.w_timer)
        if self.known:
            actions.append(self.act_terminate)
            weights.append(c.w_terminate)
        action = self.rng.choices(actions, weights)[0]
        self.now_ms += self.rng.randint(0, 2)
        action()

    def quiesce(self) -> None:
        """Run without faults or new work (except signals that let workflows
        finish) until nothing is left to do, then check the final invariants."""
        self.storage.fail_next_commit = False
        self.storage_fault_armed = False
        for key in FLOW_KEYS:
            self.submit(flow("signal", key), f"q{key}|".encode(), "send")
        for _ in range(self.config.quiesce_steps_max):
            self.step_no += 1
            if self.work_step():
                continue
            if not self.timers:
                break
            self.act_timer()
        else:
            raise Violation("the system quiesces", f"still busy after {self.config.quiesce_steps_max} steps")
        self.trace.append(f"{self.step_no} quiescent at {self.now_ms - EPOCH_MS}ms")
        self.check.at_quiescence()

    def work_step(self) -> bool:
        """One step of the work left, without faults: a batch of everything queued, the
        delivery of an attempt's messages or an SDK step; False when there is none."""
        if self.queue:
            self.run_batch(len(self.queue))
            return True
        a = next((a for a in self.attempts.values() if a.outbound), None)
        if a is not None:
            while a.outbound:
                self.deliver(a)
            return True
        a = next((a for a in self.attempts.values() if a.runnable()), None)
        if a is not None:
            self.sdk_step(a)
            if a.waiting and not a.ended:
                self.suspend(a)
            return True
        return False

    def fingerprint(self) -> str:
        """A digest of everything durable: equal for two runs of one seed."""
        return fingerprint_of(self.storage, self.step_no, self.now_ms)

    # ------------------------------------------------------------------ clients and admin

    def act_submit(self) -> None:
        rng = self.rng
        kind = rng.choices(("greet", "add", "get", "run", "signal"), weights=(4, 4, 1, 1, 1))[0]
        name = f"c{next(self._names)}"
        if kind == "greet":
            target, plan = greeter(), pg.greet_plan(rng, self.greet_steps)
        elif kind == "add":
            target, plan = counter("add", rng.choice(COUNTER_KEYS)), pg.counter_plan(rng)
        elif kind == "get":
            target, plan = counter("get", rng.choice(COUNTER_KEYS)), "lazy" if rng.random() < 0.3 else ""
        elif kind == "run":
            target, plan = flow("run", rng.choice(FLOW_KEYS)), pg.flow_plan(rng)
        else:
            target, plan = flow("signal", rng.choice(FLOW_KEYS)), ""
        mode = "send" if rng.random() < 0.4 else "call"
        ikey = f"ik{rng.randrange(4)}" if kind in ("greet", "add") and rng.random() < 0.15 else None
        delay_ms = rng.randint(1, 400) if mode == "send" and rng.random() < 0.2 else None
        self.submit(target, f"{name}|{plan}".encode(), mode, ikey, delay_ms)

    def submit(
        self,
        target: Target,
        data: bytes,
        mode: str,
        ikey: str | None = None,
        delay_ms: int | None = None,
    ) -> None:
        node = self.entry(target, ikey)
        if node is None:
            return
        if ikey is not None:
            data = self.idempotent_inputs.setdefault((target.service, target.key, target.handler, ikey), data)
        execution_time_ms = self.now_ms + delay_ms if delay_ms is not None else None
        req = InvokeRequest(target, data, idempotency_key=ikey, execution_time_ms=execution_time_ms)
        token = next(self._tokens)
        node.clients[token] = ClientRequest("invoke", mode, pg.token_of(data))
        node.queue.append(Invoke(req, token, mode))
        self.trace.append(f"{self.step_no} submit {mode} {target} {data!r} ik={ikey} delay={delay_ms}")

    def entry(self, target: Target, ikey: str | None) -> World | None:
        """The processor a client's request reaches (None: no server answers)."""
        return self

    def act_terminate(self) -> None:
        self.terminate(self.rng.choice(list(self.known)))

    def terminate(self, raw: bytes) -> None:
        mode = self.rng.choice(("kill", "cancel"))
        token = next(self._tokens)
        self.clients[token] = ClientRequest("terminate", mode, self.check.token_name(raw))
        self.queue.append(Terminate(raw, mode, token))
        self.stats.terminations += 1
        self.trace.append(f"{self.step_no} {mode} {self.check.token_name(raw)}")

    # ------------------------------------------------------------------ SDK and network

    def act_deliver(self) -> None:
        self.deliver(self.rng.choice([a for a in self.attempts.values() if a.outbound]))

    def deliver(self, a: SimAttempt) -> None:
        msg_type, body = a.outbound.popleft()
        self.queue.append(SdkMessage(a.raw, a.attempt, msg_type, body))
        self.trace.append(
            f"{self.step_no} deliver {self.check.token_name(a.raw)}/a{a.attempt} 0x{msg_type:04x}"
        )
        self._forget_if_done(a)

    def act_sdk(self) -> None:
        c = self.config
        a = self.rng.choice([a for a in self.attempts.values() if a.runnable()])
        roll = self.rng.random()
        if roll < c.sdk_transport_failure_p:
            self.transport_failure(a)
            return
        self.sdk_step(a)
        if a.ended:
            return
        if roll < c.sdk_transport_failure_p + c.sdk_error_p:
            a.fail(500, "simulated handler error")
            self.stats.sdk_errors += 1
            self.trace.append(f"{self.step_no} sdk error {self.check.token_name(a.raw)}/a{a.attempt}")
        elif a.waiting and not a.inbound and self.rng.random() < c.suspend_p:
            self.suspend(a)

    def sdk_step(self, a: SimAttempt) -> None:
        try:
            a.step(self.now_ms)
        except JournalMismatch as exc:
            raise Violation("replay matches the journal", f"{self.check.token_name(a.raw)}: {exc}") from None
        self.trace.append(
            f"{self.step_no} sdk {self.check.token_name(a.raw)}/a{a.attempt} "
            f"{'ended' if a.ended else 'waiting'} out={len(a.outbound)}"
        )

    def suspend(self, a: SimAttempt) -> None:
        a.suspend()
        self.stats.suspensions += 1
        self.trace.append(f"{self.step_no} suspend {self.check.token_name(a.raw)}/a{a.attempt}")

    def transport_failure(self, a: SimAttempt) -> None:
        """The stream broke: undelivered messages are lost; the invoker reports it."""
        a.ended = True
        a.outbound.clear()
        del self.attempts[a.raw]
        self.queue.append(AttemptFailed(a.raw, a.attempt, 503, "simulated transport failure"))
        self.stats.transport_failures += 1
        self.trace.append(f"{self.step_no} transport failure {self.check.token_name(a.raw)}/a{a.attempt}")

    def _forget_if_done(self, a: SimAttempt) -> None:
        if a.ended and not a.outbound and self.attempts.get(a.raw) is a:
            del self.attempts[a.raw]

    # ------------------------------------------------------------------ processor, storage, timers

    def act_batch(self) -> None:
        self.run_batch(self.rng.randint(1, len(self.queue)))

    def run_batch(self, n: int) -> None:
        """Apply `n` queued commands, commit their batch, release the effects."""
        self.apply_queued(n)
        batch, effects = self.processor.take()
        if self.commit(batch):
            self.processor.committed()
            self.release(effects)

    def apply_queued(self, n: int) -> None:
        for _ in range(n):
            cmd = self.queue.popleft()
            self.check.before_apply(cmd)
            try:
                self.processor.apply(cmd, self.now_ms)
            except Violation:
                raise
            except Exception as exc:
                raise Violation("the processor accepts every command", f"{exc!r} applying {cmd!r}") from exc
        self.trace.append(f"{self.step_no} batch of {n}")

    def commit(self, batch: WriteBatch) -> bool:
        """Commit a batch; an injected failure crashes the processor (False)."""
        if not batch:
            return True
        try:
            self.write(batch)
        except StorageError as exc:
            self.commit_failed(exc)
            self.crash()
            return False
        self.stats.batches += 1
        self.check.after_commit(batch)
        return True

    def write(self, batch: WriteBatch) -> None:
        self.check.before_commit(batch)
        self.storage.commit_sync(batch)

    def commit_failed(self, exc: StorageError) -> None:
        """Only an injected fault may fail a commit."""
        if not self.storage_fault_armed:
            raise Violation("each journal index is written once", str(exc)) from None
        self.storage_fault_armed = False
        self.trace.append(f"{self.step_no} commit failed (injected)")

    def release(self, effects: list[Effect]) -> None:
        for e in effects:
            self.check.on_release(e)
            if isinstance(e, SendToAttempt):
                a = self.attempts.get(e.invocation)
                if a is not None and a.attempt == e.attempt and not a.ended:
                    a.inbound.append((e.type, e.body))
            elif isinstance(e, Reply):
                req = self.clients.pop(e.token, None)
                if req is not None:
                    self.check.on_reply(req, e)
            elif isinstance(e, StartAttempt):
                self.start_attempt(e)
            elif isinstance(e, ArmTimer):
                self.timers[e.timer] = None
            elif isinstance(e, AbortAttempt):
                a = self.attempts.get(e.invocation)
                if a is not None and a.attempt == e.attempt:
                    a.ended = True
                    a.outbound.clear()
                    del self.attempts[e.invocation]

    def start_attempt(self, e: StartAttempt) -> None:
        self.attempts.pop(e.invocation, None)  # as the invoker does: a newer attempt replaces the old
        self.check.on_start(e)
        try:
            self.attempts[e.invocation] = SimAttempt(e, self.check.on_run)
        except JournalMismatch as exc:
            raise Violation("replay matches the journal", str(exc)) from None
        self.known[e.invocation] = None
        self.stats.attempts += 1
        self.trace.append(f"{self.step_no} start {self.check.token_name(e.invocation)}/a{e.attempt}")

    def act_timer(self) -> None:
        """Jump the clock to the earliest armed timer and fire every due timer."""
        self.now_ms = max(self.now_ms, min(self.timers).wake_at_ms)
        self.fire_due()
        self.trace.append(f"{self.step_no} timers fired at {self.now_ms - EPOCH_MS}ms")

    def fire_due(self) -> None:
        for t in sorted(t for t in self.timers if t.wake_at_ms <= self.now_ms):
            del self.timers[t]
            self.queue.append(TimerFired(t))
            self.stats.timers_fired += 1

    def act_storage_fault(self) -> None:
        self.storage.fail_next_commit = True
        self.storage_fault_armed = True
        self.stats.storage_faults += 1
        self.trace.append(f"{self.step_no} storage fault armed")

    def act_crash(self) -> None:
        self.trace.append(f"{self.step_no} crash")
        self.crash()

    def crash(self) -> None:
        """Lose everything volatile, then restart the processor from storage."""
        self.stats.crashes += 1
        self.queue.clear()
        self.attempts.clear()
        self.timers.clear()
        self.clients.clear()  # their connections drop: nothing more is acknowledged to them
        self.check.on_crash()
        self.recover()

    def recover(self) -> None:
        self.processor = Processor(self.storage, self.schema)
        try:
            self.processor.recover(self.storage, self.now_ms)
        except Exception as exc:
            raise Violation("the processor recovers from any committed state", repr(exc)) from exc
        batch, effects = self.processor.take()
        if self.commit(batch):  # on failure, commit() crashed and recovered again
            self.processor.committed()
            self.check.after_recover()
            self.release(effects)
