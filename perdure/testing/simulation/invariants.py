"""The invariants a simulation checks, step by step and at the end.

Safety (after every commit and at every release):
- no effect is released before the batch that produced it is durable: every
  notification sent to an attempt, every journal in a StartAttempt, every
  reply refers to data already in storage;
- journals are written contiguously from index 0, each index once, and the
  invocation record's journal length agrees;
- each completion id is journaled once; a sleep completes at or after its wake time;
- a run whose completion was acknowledged to the SDK never executes again;
- at most one exclusive handler per key has a live attempt; calls on one key
  start in the order they were accepted, across crashes;
- acknowledged journal entries survive crashes; delayed invocations never start early.
Liveness (after running to quiescence without faults): every invocation is
completed, no key is locked, no timer is left, Counter values equal the
number of `add` calls that wrote them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from perdure.protocol.codec import MessageType as T
from perdure.protocol.codec import decode
from perdure.protocol.ids import InvocationId
from perdure.server.processor.batch import WriteBatch
from perdure.server.processor.commands import Command, Invoke, SdkMessage
from perdure.server.processor.effects import Effect, Reply, SendToAttempt, StartAttempt
from perdure.server.processor.identity import idempotent_id, workflow_id
from perdure.server.processor.model import (
    COMPLETED,
    INBOXED,
    INVOKED,
    PAUSED,
    SUSPENDED,
    Invocation,
    Outcome,
    Target,
    decode_record,
)
from perdure.server.processor.processor import KILLED
from perdure.testing.simulation.programs import token_of
from perdure.testing.simulation.schema import COUNTER_KEYS, COUNTER_STATE_KEY, SCRATCH_STATE_KEY
from perdure.testing.simulation.violation import Violation

if TYPE_CHECKING:
    from perdure.testing.simulation.world import World

ADD = ("Counter", "add")
LOCK_HOLDER_STATUSES = (INVOKED, SUSPENDED, PAUSED)


@dataclass(slots=True)
class ClientRequest:
    """A request a client (or admin) is waiting on: `name` is the invocation's token."""

    kind: str  # "invoke" | "terminate"
    mode: str  # "call" | "send" | "kill" | "cancel"
    name: str


class Checker:
    def __init__(self, world: World) -> None:
        self.w = world
        self.acked_runs: set[tuple[bytes, int]] = set()
        self.acked: dict[bytes, dict[int, tuple[int, bytes]]] = {}
        self.notified: dict[bytes, set[int]] = {}
        self.sleeps: dict[tuple[bytes, int], int] = {}
        self.names: dict[bytes, str] = {}
        self.raws: dict[str, bytes] = {}
        self.delayed: dict[str, int] = {}
        self.started: dict[str, None] = {}
        self.pending_accepts: list[tuple[str, str]] = []
        self.pending_delayed: list[tuple[str, int]] = []
        self.accepted: dict[str, list[str]] = {}
        self.acquired: dict[str, dict[str, None]] = {}
        self.acked_sends: dict[bytes, str] = {}
        self.replied: dict[bytes, Reply] = {}
        self.completed: dict[bytes, Outcome | None] = {}  # first stored outcome of each completion
        self._decoded: dict[bytes, tuple[bytes, Invocation]] = {}

    def token_name(self, raw: bytes) -> str:
        return self.names.get(raw) or str(InvocationId.from_raw(raw))

    # ------------------------------------------------------------------ before apply: acceptance order

    def before_apply(self, cmd: Command) -> None:
        """Note Counter.add invocations this command creates, in order (kept if the batch commits)."""
        if isinstance(cmd, Invoke):
            req = cmd.request
            t = req.target
            if not self._creates(t, req.idempotency_key):
                return
            name = token_of(req.input)
            if req.execution_time_ms is not None and req.execution_time_ms > self.w.now_ms:
                self.pending_delayed.append((name, req.execution_time_ms))
            elif (t.service, t.handler) == ADD:
                assert t.key is not None
                self.pending_accepts.append((t.key, name))
        elif isinstance(cmd, SdkMessage) and cmd.type in (T.CALL, T.ONE_WAY_CALL):
            inv = self.w.processor.resident().get(cmd.invocation)
            if inv is None or inv.attempt != cmd.attempt or not inv.attempt_live:
                return
            msg = decode(cmd.type, cmd.body)
            name = token_of(msg.parameter)
            invoke_time = msg.invoke_time if cmd.type == T.ONE_WAY_CALL else 0
            if invoke_time > self.w.now_ms:
                self.pending_delayed.append((name, invoke_time))
            elif (msg.service_name, msg.handler_name) == ADD:
                self.pending_accepts.append((msg.key, name))

    def _creates(self, t: Target, ikey: str | None) -> bool:
        """Whether an Invoke makes a new invocation (not a duplicate of an existing one)."""
        if t.handler_ty == "workflow" and t.key is not None:
            raw = workflow_id(t.service, t.key).raw
        elif ikey is not None:
            raw = idempotent_id(t.service, t.key, t.handler, ikey).raw
        else:
            return True
        return raw not in self.w.processor.resident() and raw not in self.w.storage.invocations

    def on_crash(self) -> None:
        self.pending_accepts.clear()
        self.pending_delayed.clear()

    # ------------------------------------------------------------------ around commits

    def before_commit(self, batch: WriteBatch) -> None:
        """Journal appends continue each journal at its stored length, one index after another."""
        stored = self.w.storage.journal
        deleted = set(batch.journal_delete)
        nxt: dict[bytes, int] = {}
        for raw, idx, msg_type, _, _ in batch.journal:
            if raw not in nxt:
                nxt[raw] = 0 if raw in deleted else len(stored.get(raw, ()))
            if idx != nxt[raw]:
                raise Violation(
                    "journals are contiguous, each index written once",
                    f"{self.token_name(raw)}: batch writes index {idx} (0x{msg_type:04x}), "
                    f"next free is {nxt[raw]}",
                )
            nxt[raw] = idx + 1

    def after_commit(self, batch: WriteBatch) -> None:
        for raw in batch.journal_delete:
            self.notified.pop(raw, None)  # rewritten entries are checked again below
            if raw in batch.invocations and batch.invocations[raw] is None:
                self.acked.pop(raw, None)  # purged: nothing of it is acknowledged any more
        for raw, _, msg_type, body, ts in batch.journal:
            if msg_type == T.SLEEP:
                sleep = decode(msg_type, body)
                self.sleeps[(raw, sleep.result_completion_id)] = sleep.wake_up_time
            elif msg_type >= 0x8000 and msg_type != T.SIGNAL:
                self._on_notification(raw, msg_type, body, ts)
        self._check_lengths(batch)
        self._check_locks_and_inboxes()
        for key, name in self.pending_accepts:
            self.accepted.setdefault(key, []).append(name)
        self.pending_accepts.clear()
        self.delayed.update(self.pending_delayed)
        self.pending_delayed.clear()

    def _on_notification(self, raw: bytes, msg_type: int, body: bytes, ts: int) -> None:
        n = decode(msg_type, body)
        cid = n.completion_id
        seen = self.notified.setdefault(raw, set())
        if cid in seen:
            raise Violation(
                "each completion is journaled once",
                f"{self.token_name(raw)}: completion {cid} (0x{msg_type:04x}) journaled again",
            )
        seen.add(cid)
        if msg_type == T.SLEEP_COMPLETION:
            wake = self.sleeps.get((raw, cid))
            if wake is None:
                raise Violation(
                    "a sleep completes once", f"{self.token_name(raw)}: completion {cid} without a sleep"
                )
            if ts < wake:
                raise Violation(
                    "timers never fire early",
                    f"{self.token_name(raw)}: sleep {cid} completed at {ts}, "
                    f"wake time {wake} ({wake - ts} ms early)",
                )
        elif msg_type == T.CALL_INVOCATION_ID_COMPLETION:
            for _, (ty, cbody, _) in sorted(self.w.storage.journal.get(raw, {}).items()):
                if ty in (T.CALL, T.ONE_WAY_CALL):
                    call = decode(ty, cbody)
                    if call.invocation_id_notification_idx == cid:
                        self.raws[token_of(call.parameter)] = InvocationId.parse(n.invocation_id).raw

    def _check_lengths(self, batch: WriteBatch) -> None:
        for raw, rec in batch.invocations.items():
            if rec is None:
                self.completed.pop(raw, None)  # purged
                continue
            stored = self._stored(raw)
            assert stored is not None
            self._check_completed_once(raw, stored)
            n = stored.journal_length
            j = self.w.storage.journal.get(raw, {})
            if len(j) != n or (j and max(j) != n - 1):
                raise Violation(
                    "journals are contiguous, each index written once",
                    f"{self.token_name(raw)}: record says {n} entries, storage has indices {sorted(j)}",
                )

    def _check_completed_once(self, raw: bytes, inv: Invocation) -> None:
        """A completed invocation stays completed with the same outcome (it completes once)."""
        first = self.completed.get(raw)
        if inv.status == COMPLETED:
            if first is None:
                self.completed[raw] = inv.outcome
            elif first != inv.outcome:
                raise Violation(
                    "every invocation completes exactly once",
                    f"{self.token_name(raw)} completed with {first}, then again with {inv.outcome}",
                )
        elif first is not None:
            raise Violation(
                "every invocation completes exactly once",
                f"{self.token_name(raw)} completed with {first}, then became {inv.status}",
            )

    def _check_locks_and_inboxes(self) -> None:
        """Durable locks name running invocations, durable inbox rows inboxed ones:
        what a restarted processor loads must agree with the invocation records."""
        st = self.w.storage
        for (svc, key), raw in st.locks.items():
            status = self._stored_status(raw)
            if status not in LOCK_HOLDER_STATUSES:
                raise Violation(
                    "durable locks and inboxes agree with invocation records",
                    f"{svc}/{key} is locked by {self.token_name(raw)}, which is {status}",
                )
        for (svc, key), rows in st.inbox.items():
            for seq, raw in rows.items():
                status = self._stored_status(raw)
                if status != INBOXED:
                    raise Violation(
                        "durable locks and inboxes agree with invocation records",
                        f"inbox row {seq} of {svc}/{key} names {self.token_name(raw)}, which is {status}",
                    )

    def _stored_status(self, raw: bytes) -> str | None:
        inv = self._stored(raw)
        return None if inv is None else inv.status

    def _stored(self, raw: bytes) -> Invocation | None:
        """The stored record, decoded once per stored version."""
        rec = self.w.storage.invocations.get(raw)
        if rec is None:
            return None
        cached = self._decoded.get(raw)
        if cached is None or cached[0] is not rec:
            cached = (rec, decode_record(raw, rec))
            self._decoded[raw] = cached
        return cached[1]

    def after_recover(self) -> None:
        """Every entry an effect referred to is still in storage, unchanged."""
        for raw, entries in self.acked.items():
            j = self.w.storage.journal.get(raw, {})
            for idx, (msg_type, body) in entries.items():
                got = j.get(idx)
                if got is None or got[:2] != (msg_type, body):
                    raise Violation(
                        "no acknowledged entry is lost",
                        f"{self.token_name(raw)}: entry {idx} (0x{msg_type:04x}) acknowledged, now {got!r}",
                    )

    # ------------------------------------------------------------------ at release

    def on_release(self, e: Effect) -> None:
        if isinstance(e, SendToAttempt):
            idx = self._find(e.invocation, e.type, e.body)
            if idx is None:
                raise Violation(
                    "no effect is released before its batch is durable",
                    f"notification 0x{e.type:04x} to {self.token_name(e.invocation)} is not in storage",
                )
            self._ack(e.invocation, idx, e.type, e.body)
        elif isinstance(e, StartAttempt):
            self._check_start_journal(e)
        elif isinstance(e, Reply) and e.invocation_id is not None and e.kind in ("outcome", "accepted"):
            raw = InvocationId.parse(e.invocation_id).raw
            inv = self._stored(raw)
            if inv is None:
                raise Violation(
                    "no effect is released before its batch is durable",
                    f"reply {e.kind} for {self.token_name(raw)}, which is not in storage",
                )
            if e.kind == "outcome" and (inv.status != COMPLETED or inv.outcome != e.outcome):
                raise Violation(
                    "no effect is released before its batch is durable",
                    f"reply {e.outcome} for {self.token_name(raw)}; storage has {inv.status} {inv.outcome}",
                )

    def _find(self, raw: bytes, msg_type: int, body: bytes) -> int | None:
        j = self.w.storage.journal.get(raw, {})
        for idx in range(len(j) - 1, -1, -1):
            got = j.get(idx)
            if got is not None and got[0] == msg_type and got[1] == body:
                return idx
        return None

    def _ack(self, raw: bytes, idx: int, msg_type: int, body: bytes) -> None:
        self.acked.setdefault(raw, {})[idx] = (msg_type, body)
        if msg_type == T.RUN_COMPLETION:
            self.acked_runs.add((raw, decode(msg_type, body).completion_id))

    def _check_start_journal(self, e: StartAttempt) -> None:
        """The journal sent with Start is made of stored entries, in stored order."""
        raw = e.invocation
        if raw not in self.w.storage.invocations:
            raise Violation(
                "no effect is released before its batch is durable",
                f"attempt {e.attempt} of {self.token_name(raw)} started before its record was stored",
            )
        j = self.w.storage.journal.get(raw, {})
        idx = 0
        for entry in e.journal:
            while idx < len(j) and j[idx][:2] != (entry.type, entry.body):
                idx += 1
            if idx == len(j):
                raise Violation(
                    "no effect is released before its batch is durable",
                    f"attempt {e.attempt} of {self.token_name(raw)} replays 0x{entry.type:04x}, "
                    "which is not in storage",
                )
            self._ack(raw, idx, entry.type, entry.body)
            idx += 1

    def on_reply(self, req: ClientRequest, e: Reply) -> None:
        if e.invocation_id is None:
            return
        raw = InvocationId.parse(e.invocation_id).raw
        if req.kind == "invoke":
            self.names.setdefault(raw, req.name)
            self.raws.setdefault(req.name, raw)
        if req.kind == "invoke" and e.kind == "accepted":
            self.acked_sends[raw] = req.name
            self.w.known[raw] = None
        elif e.kind == "outcome":
            self.replied[raw] = e

    def on_start(self, e: StartAttempt) -> None:
        raw, t = e.invocation, e.target
        name = token_of(decode(T.INPUT, e.journal[0].body).value.content)
        self.names[raw] = name
        self.raws[name] = raw
        first = name not in self.started
        self.started[name] = None
        if first and name in self.delayed and self.w.now_ms < self.delayed[name]:
            raise Violation(
                "delayed invocations never start early",
                f"{name} started at {self.w.now_ms}, due at {self.delayed[name]}",
            )
        if t.exclusive:
            for a in self.w.attempts.values():
                other = a.start.target
                if not a.ended and other.exclusive and (other.service, other.key) == (t.service, t.key):
                    raise Violation(
                        "one exclusive handler per key runs at a time",
                        f"{name} started on {t.service}/{t.key} while {self.token_name(a.raw)} is running",
                    )
        if first and (t.service, t.handler) == ADD and name not in self.delayed:
            assert t.key is not None
            self._check_inbox_order(t.key, name)

    def _check_inbox_order(self, key: str, name: str) -> None:
        log = self.accepted.get(key, [])
        if name not in log:
            raise Violation(
                "calls on one key run in the order they were accepted",
                f"{name} started on Counter/{key} but was never durably accepted",
            )
        acquired = self.acquired.setdefault(key, {})
        for earlier in log[: log.index(name)]:
            if earlier in acquired:
                continue
            raw = self.raws.get(earlier)
            inv = self._stored(raw) if raw is not None else None
            if inv is None or inv.status != COMPLETED:
                raise Violation(
                    "calls on one key run in the order they were accepted",
                    f"{name} started on Counter/{key} before {earlier}, accepted earlier",
                )
        acquired[name] = None

    def on_run(self, raw: bytes, cid: int, attempt: int) -> None:
        self.w.stats.runs_executed += 1
        if (raw, cid) in self.acked_runs:
            raise Violation(
                "an acknowledged run never executes again",
                f"{self.token_name(raw)}: run {cid} executes in attempt {attempt}, "
                "its result was acknowledged",
            )

    # ------------------------------------------------------------------ at quiescence

    def at_quiescence(self) -> None:
        st = self.w.storage
        locked = {**st.locks, **self.w.processor.locks()}
        if locked or any(st.inbox.values()):
            raise Violation("no key is left locked", f"locks {sorted(locked)}, inbox {dict(st.inbox)}")
        if st.timers:
            raise Violation("no timer is left", f"{sorted(st.timers)[:3]}")
        invocations = {raw: decode_record(raw, rec) for raw, rec in st.invocations.items()}
        for raw, inv in invocations.items():
            outcome = "ok" if inv.outcome is not None and inv.outcome.failure is None else str(inv.outcome)
            self.w.stats.by_outcome[outcome] = self.w.stats.by_outcome.get(outcome, 0) + 1
            if inv.status != COMPLETED:
                raise Violation(
                    "every invocation completes",
                    f"{self.token_name(raw)} ({inv.target}) is {inv.status} with nothing left to wake it",
                )
        self.w.stats.invocations = len(invocations)
        for raw, name in self.acked_sends.items():
            if raw not in invocations:
                raise Violation("every acknowledged invocation completes", f"{name} was accepted, then lost")
        for raw, reply in self.replied.items():
            now = invocations.get(raw)
            if now is None or now.outcome != reply.outcome:
                raise Violation(
                    "replies are final", f"{self.token_name(raw)} replied {reply.outcome}, now {now}"
                )
        self.after_recover()
        self._check_counters(invocations)

    def _check_counters(self, invocations: dict[bytes, Invocation]) -> None:
        st = self.w.storage
        writes = dict.fromkeys(COUNTER_KEYS, 0)
        results: dict[str, list[int]] = {k: [] for k in COUNTER_KEYS}
        dangling: dict[str, bytes] = {}  # key -> scratch value an add set and (killed) never cleared
        for raw, inv in invocations.items():
            t = inv.target
            if (t.service, t.handler) != ADD:
                continue
            assert t.key is not None
            wrote = any(
                e.type == T.SET_STATE and decode(e.type, e.body).key == COUNTER_STATE_KEY
                for e in st.get_journal(raw)
            )
            ok = inv.outcome is not None and inv.outcome.failure is None
            if ok != wrote and not (wrote and inv.outcome is not None and inv.outcome.failure == KILLED):
                raise Violation(
                    "Counter values equal the number of completed adds",
                    f"{self.token_name(raw)}: outcome {inv.outcome}, state written: {wrote}",
                )
            writes[t.key] += wrote
            scratch = self._scratch_left(raw)
            if scratch is not None:
                dangling[t.key] = scratch
            if ok and inv.outcome is not None and inv.outcome.value is not None:
                results[t.key].append(int(inv.outcome.value))
        for key in COUNTER_KEYS:
            state = st.state.get(("Counter", key), {})
            scratch = state.get(SCRATCH_STATE_KEY)
            if scratch is not None and dangling.get(key) != scratch:
                raise Violation(
                    "state mutations apply in journal order",
                    f"Counter/{key} keeps {SCRATCH_STATE_KEY!r} = {scratch!r}, set then cleared",
                )
            value = int(state.get(COUNTER_STATE_KEY, b"0"))
            seen = results[key]
            if value != writes[key] or len(set(seen)) != len(seen) or any(v > value for v in seen):
                raise Violation(
                    "Counter values equal the number of completed adds",
                    f"Counter/{key} = {value}; {writes[key]} adds wrote it; add results {sorted(seen)}",
                )

    def _scratch_left(self, raw: bytes) -> bytes | None:
        """The scratch value this invocation set last and did not clear."""
        left: bytes | None = None
        for e in self.w.storage.get_journal(raw):
            if e.type in (T.SET_STATE, T.CLEAR_STATE):
                m = decode(e.type, e.body)
                if m.key == SCRATCH_STATE_KEY:
                    left = m.value.content if e.type == T.SET_STATE else None
        return left
