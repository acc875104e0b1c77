"""Concurrency and rate rules (Restate's `/limits/rules`, plus Perdure's token buckets), sans-IO.

A rule's pattern has up to three components matched against an invocation's service, handler
and key (`*` matches any one; fewer components match every invocation below them): `*`,
`Svc`, `Svc/*`, `Svc/handler`, `Svc/handler/key`. Every enabled rule an invocation matches
bounds it, all of them together: `concurrency` caps how many of the invocations the rule
matches run at once (from their first attempt until they complete), `rate_per_s` with
`burst` is a token bucket (GCRA: one theoretical arrival time per rule) on how fast they start.

An invocation that may not start yet waits, durably, in a FIFO queue of the invocations that
match the same rules; a slot freed, a rule loosened or the bucket's next token (a timer) lets
the head go. Every decision uses the processor's clock, so the simulation replays it.

Storage: rules (`RULE_PUT`/`RULE_DELETE`, the bucket in `RULE_TAT`) and entries, one per
invocation a rule holds, running or queued (`LIMIT_PUT`/`LIMIT_DELETE`)."""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, replace
from typing import Any

import orjson

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.processor.commands import RuleChange
from perdure.server.processor.model import Target

PATTERN_COMPONENTS_MAX = 3
RULES_MAX = 10_000
_COMPONENT = re.compile(r"[a-zA-Z0-9_.\-]+|\*")
US_PER_S = 1_000_000


class RuleError(Exception):
    """A rule change the caller got wrong: `status` is Restate's (409 precondition, 422 shape)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def parse_pattern(pattern: str) -> tuple[str, ...]:
    """The components of a pattern, or ValueError with Restate's wording."""
    if not pattern:
        raise ValueError("pattern cannot be empty")
    parts = tuple(pattern.split("/"))
    if len(parts) > PATTERN_COMPONENTS_MAX:
        raise ValueError(f"too many path components (max {PATTERN_COMPONENTS_MAX})")
    for part in parts:
        if not _COMPONENT.fullmatch(part):
            raise ValueError(
                "invalid component: value contains characters outside the allowed set [a-zA-Z0-9_.-]"
            )
    return parts


def target_parts(t: Target) -> tuple[str, str, str | None]:
    return (t.service, t.handler, t.key)


def matches(parts: tuple[str, ...], target: tuple[str, str, str | None]) -> bool:
    return all(p == "*" or p == v for p, v in zip(parts, target, strict=False))


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: str
    concurrency: int | None = None
    rate_per_s: float | None = None  # Perdure's: token bucket refill rate
    burst: int | None = None  # Perdure's: bucket size (default 1)
    description: str | None = None
    disabled: bool = False
    version: int = 0
    last_modified_ms: int = 0

    @property
    def parts(self) -> tuple[str, ...]:
        return parse_pattern(self.pattern)

    def limits_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.concurrency is not None:
            out["concurrency"] = self.concurrency
        if self.rate_per_s is not None:
            out["rate_per_s"] = self.rate_per_s
            out["burst"] = self.burst or 1
        return out

    def to_json(self) -> dict[str, Any]:
        """Restate's RuleResponse (with Perdure's rate fields inside `limits` when set)."""
        out: dict[str, Any] = {"pattern": self.pattern, "limits": self.limits_json()}
        if self.description is not None:
            out["description"] = self.description
        out.update(
            disabled=self.disabled,
            version=self.version,
            last_modified_millis_since_epoch=self.last_modified_ms,
        )
        return out

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "c": self.concurrency,
                "r": self.rate_per_s,
                "b": self.burst,
                "d": self.description,
                "x": self.disabled,
                "v": self.version,
                "m": self.last_modified_ms,
            }
        )

    @staticmethod
    def decode(pattern: str, data: bytes) -> Rule:
        d = orjson.loads(data)
        return Rule(pattern, d["c"], d["r"], d["b"], d["d"], d["x"], d["v"], d["m"])

    def interval_us(self) -> int:
        assert self.rate_per_s is not None
        return max(1, round(US_PER_S / self.rate_per_s))

    def tolerance_us(self) -> int:
        return (max(1, self.burst or 1) - 1) * self.interval_us()


@dataclass(slots=True)
class LimitEntry:
    seq: int
    running: bool
    target: tuple[str, str, str | None]
    rules: tuple[str, ...]  # the enabled rules it matched when it arrived or rules last changed


class Limits:
    """The rule book and the entries it holds; the processor asks it before an invocation starts."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self.tat_us: dict[str, int] = {}  # rule -> theoretical arrival time of the next start
        self.entries: dict[bytes, LimitEntry] = {}
        self.running: dict[str, int] = {}
        self.queues: dict[tuple[str, ...], deque[bytes]] = {}
        self.seq = 0
        self._enabled: list[tuple[str, tuple[str, ...]]] = []

    # ------------------------------------------------------------------ loading

    def load(
        self, rules: list[tuple[str, bytes, int]], entries: list[tuple[bytes, int, int, str, str, str | None]]
    ) -> None:
        for pattern, data, tat in rules:
            self.rules[pattern] = Rule.decode(pattern, data)
            self.tat_us[pattern] = tat
        self._reindex()
        for raw, seq, running, service, handler, key in sorted(entries, key=lambda e: e[1]):
            target = (service, handler, key)
            self.entries[raw] = LimitEntry(seq, bool(running), target, self._matching(target))
            self.seq = max(self.seq, seq)
        self._recount()

    def _reindex(self) -> None:
        self._enabled = [(p, r.parts) for p, r in sorted(self.rules.items()) if not r.disabled and _limits(r)]

    def _matching(self, target: tuple[str, str, str | None]) -> tuple[str, ...]:
        return tuple(p for p, parts in self._enabled if matches(parts, target))

    def _recount(self) -> None:
        """Counts and queues from the entries (after loading or a rule change)."""
        self.running = {}
        self.queues = {}
        for raw, e in sorted(self.entries.items(), key=lambda kv: kv[1].seq):
            if e.running:
                for p in e.rules:
                    self.running[p] = self.running.get(p, 0) + 1
            else:
                self.queues.setdefault(e.rules, deque()).append(raw)

    # ------------------------------------------------------------------ admission

    def arrive(self, raw: bytes, t: Target, now_ms: int, batch: WriteBatch) -> bool | None:
        """An invocation about to start: True when it may (a rule now counts it), False when it
        must wait (it is queued), None when no rule applies (nothing is recorded)."""
        if not self._enabled:
            return None
        target = target_parts(t)
        rules = self._matching(target)
        if not rules:
            return None
        self.seq += 1
        entry = LimitEntry(self.seq, False, target, rules)
        self.entries[raw] = entry
        queue = self.queues.get(rules)
        if not queue and self._take(rules, now_ms, batch):
            entry.running = True
        else:
            self.queues.setdefault(rules, deque()).append(raw)
        batch.op(Op.LIMIT_PUT, raw, entry.seq, int(entry.running), *target)
        return entry.running

    def _blocked_until(self, rules: tuple[str, ...], now_ms: int) -> int | None:
        """None when every rule lets one more start at `now_ms`; else when to try again (ms),
        or -1 when only a completion can free it."""
        now_us = now_ms * 1000
        wait_us = 0
        for p in rules:
            r = self.rules[p]
            if r.concurrency is not None and self.running.get(p, 0) >= r.concurrency:
                return -1
            if r.rate_per_s is not None:
                allowed_at = self.tat_us.get(p, 0) - r.tolerance_us()
                wait_us = max(wait_us, allowed_at - now_us)
        if wait_us > 0:
            return (now_us + wait_us + 999) // 1000
        return None

    def _take(self, rules: tuple[str, ...], now_ms: int, batch: WriteBatch) -> bool:
        if self._blocked_until(rules, now_ms) is not None:
            return False
        now_us = now_ms * 1000
        for p in rules:
            r = self.rules[p]
            if r.concurrency is not None:
                self.running[p] = self.running.get(p, 0) + 1
            if r.rate_per_s is not None:
                tat = max(self.tat_us.get(p, 0), now_us) + r.interval_us()
                self.tat_us[p] = tat
                batch.op(Op.RULE_TAT, p, tat)
        return True

    def release(self, raw: bytes, batch: WriteBatch) -> bool:
        """The invocation completed (or left its queue): True when it held or waited for a slot."""
        entry = self.entries.pop(raw, None)
        if entry is None:
            return False
        batch.op(Op.LIMIT_DELETE, raw)
        if entry.running:
            for p in entry.rules:
                if p in self.running:
                    self.running[p] -= 1
        else:
            queue = self.queues.get(entry.rules)
            if queue is not None and raw in queue:
                queue.remove(raw)
                if not queue:
                    del self.queues[entry.rules]
        return True

    def ready(self, now_ms: int, batch: WriteBatch) -> tuple[list[bytes], int | None]:
        """Queued invocations that may start now (they now count), in queue order, and the
        earliest time a rate rule lets the next one go (None: no rate wait)."""
        started: list[bytes] = []
        wake_ms: int | None = None
        for rules in list(self.queues):
            queue = self.queues[rules]
            while queue:
                blocked = self._blocked_until(rules, now_ms)
                if blocked is not None:
                    if blocked >= 0:
                        wake_ms = blocked if wake_ms is None else min(wake_ms, blocked)
                    break
                self._take(rules, now_ms, batch)
                raw = queue.popleft()
                entry = self.entries[raw]
                entry.running = True
                batch.op(Op.LIMIT_PUT, raw, entry.seq, 1, *entry.target)
                started.append(raw)
            if not queue:
                del self.queues[rules]
        return started, wake_ms

    def next_wake_ms(self, rules: tuple[str, ...], now_ms: int) -> int | None:
        blocked = self._blocked_until(rules, now_ms)
        return blocked if blocked is not None and blocked >= 0 else None

    def usage(self) -> list[dict[str, Any]]:
        """One row per enabled rule: running, queued and the next start the bucket allows."""
        queued: dict[str, int] = {}
        for rules, queue in self.queues.items():
            for p in rules:
                queued[p] = queued.get(p, 0) + len(queue)
        rows = []
        for p, _ in self._enabled:
            r = self.rules[p]
            rows.append(
                {
                    "pattern": p,
                    "concurrency": r.concurrency,
                    "running": self.running.get(p, 0),
                    "waiting": queued.get(p, 0),
                    "rate_per_s": r.rate_per_s,
                    "burst": r.burst or 1 if r.rate_per_s is not None else None,
                    "next_start_at_ms": (self.tat_us.get(p, 0) - r.tolerance_us()) // 1000
                    if r.rate_per_s is not None
                    else None,
                }
            )
        return rows

    # ------------------------------------------------------------------ rule changes

    def change(self, changes: list[RuleChange], now_ms: int, batch: WriteBatch) -> list[Any]:
        """Apply a whole upsert or delete batch atomically (RuleError leaves the book as it was).
        Returns the rules written (upsert) or the patterns removed (delete)."""
        for c in changes:
            current = self.rules.get(c.pattern)
            if c.precondition == "does_not_exist" and current is not None:
                raise RuleError(409, _precondition_failed("DoesNotExist", c.pattern, current))
            if c.precondition == "matches" and (current is None or current.version != c.expected_version):
                raise RuleError(
                    409, _precondition_failed(f"Matches(v{c.expected_version})", c.pattern, current)
                )
        upserts = [c for c in changes if not c.delete]
        if len(set(self.rules) | {c.pattern for c in upserts}) > RULES_MAX:
            raise RuleError(422, f"at most {RULES_MAX} rules")
        book_version = max((r.version for r in self.rules.values()), default=0) + 1
        out: list[Any] = []
        for c in changes:
            if c.delete:
                if self.rules.pop(c.pattern, None) is not None:
                    self.tat_us.pop(c.pattern, None)
                    batch.op(Op.RULE_DELETE, c.pattern)
                    out.append(c.pattern)
                continue
            rule = self._upserted(c, book_version, now_ms)
            self.rules[c.pattern] = rule
            batch.op(Op.RULE_PUT, c.pattern, rule.encode())
            if rule.rate_per_s is not None and c.pattern in self.tat_us:
                # A new rate applies from now: a start the old (slower) rate put far ahead comes in.
                tat = min(self.tat_us[c.pattern], now_ms * 1000 + rule.interval_us())
                self.tat_us[c.pattern] = tat
                batch.op(Op.RULE_TAT, c.pattern, tat)
            out.append(rule)
        self._reindex()
        for e in self.entries.values():
            e.rules = self._matching(e.target)
        self._recount()
        return out

    def _upserted(self, c: RuleChange, book_version: int, now_ms: int) -> Rule:
        current = self.rules.get(c.pattern)
        new = Rule(
            c.pattern, c.concurrency, c.rate_per_s, c.burst, c.description, c.disabled, book_version, now_ms
        )
        if current is None:
            return new
        same = (current.concurrency, current.rate_per_s, current.burst, current.disabled) == (
            new.concurrency,
            new.rate_per_s,
            new.burst,
            new.disabled,
        )
        return replace(new, version=current.version if same else current.version + 1)


def _limits(r: Rule) -> bool:
    return r.concurrency is not None or r.rate_per_s is not None


def _precondition_failed(what: str, pattern: str, current: Rule | None) -> str:
    actual = f"Some(v{current.version})" if current is not None else "None"
    return f"rule precondition {what} for pattern {pattern} failed (actual version: {actual})"
