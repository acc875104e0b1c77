"""Concurrency and rate rules (Restate's `/limits/rules`, plus Perdure's token buckets), sans-IO.

A rule's pattern has one to three components matched against an invocation's service, handler
and key (`*` matches any one): `*`, `Svc`, `Svc/*`, `Svc/handler`, `Svc/*/*`, `Svc/handler/key`.
As in Restate's rule book, a rule with n components counts separately for each value of the
first n of (service, handler, key): `Svc` counts all of Svc's invocations together, `Svc/*` each
handler of Svc on its own, `Svc/run/*` each key of `Svc/run` on its own (a three-component rule
applies only to keyed invocations). Every enabled rule an invocation matches bounds it, all of
them together: `concurrency` caps how many run at once in the rule's count for that value (from
their first attempt until they complete), `rate_per_s` with `burst` is a token bucket (GCRA: one
theoretical arrival time, TAT) per rule and value on how fast they start.

An invocation that may not start yet waits, durably, in a FIFO queue of the invocations that
match the same buckets; a slot freed, a rule loosened or the bucket's next token (a timer) lets
the head go. Every decision uses the processor's clock, so the simulation replays it.

Storage: rules (`RULE_PUT`/`RULE_DELETE`) and entries, one per invocation a rule holds, running or
queued (`LIMIT_PUT`/`LIMIT_DELETE`). A rule stores one TAT (`RULE_TAT`): the latest of its
buckets'. After a restart every bucket of the rule starts from it, so a restart never lets more
start than the limit allows (a value idle before the crash may wait up to burst / rate once)."""

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
TAT_PRUNE_MIN = 4096  # buckets kept before full ones are forgotten


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
    if len(parts) == PATTERN_COMPONENTS_MAX and target[2] is None:
        return False  # a key pattern applies to keyed invocations only (Restate's level 2)
    return all(p == "*" or p == v for p, v in zip(parts, target, strict=False))


Bucket = tuple[str, tuple[str | None, ...]]  # (rule pattern, the values it counts separately)


def bucket_of(pattern: str, parts: tuple[str, ...], target: tuple[str, str, str | None]) -> Bucket:
    return (pattern, target[: len(parts)])


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

    def tokens(self, tat_us: int, now_us: int) -> float:
        """Starts a bucket at `tat_us` allows right now (fractional: refilling), 0 to burst."""
        burst = max(1, self.burst or 1)
        left = (now_us + self.tolerance_us() - tat_us) / self.interval_us() + 1
        return min(float(burst), max(0.0, left))


@dataclass(slots=True)
class LimitEntry:
    seq: int
    running: bool
    target: tuple[str, str, str | None]
    buckets: tuple[Bucket, ...]  # of the enabled rules it matched when it arrived or rules last changed


@dataclass(slots=True)
class RuleStats:
    """Since the processor started: invocations a rule let start, and those that had to wait first."""

    admitted: int = 0
    delayed: int = 0


class Limits:
    """The rule book and the entries it holds; the processor asks it before an invocation starts."""

    def __init__(self) -> None:
        self.rules: dict[str, Rule] = {}
        self.tat_us: dict[Bucket, int] = {}  # theoretical arrival time of the bucket's next start
        self.floor_tat_us: dict[str, int] = {}  # the TAT stored at recovery: where unseen buckets start
        self.stored_tat_us: dict[str, int] = {}  # the TAT the rule stores: its buckets' latest
        self.entries: dict[bytes, LimitEntry] = {}
        self.running: dict[Bucket, int] = {}
        self.queues: dict[tuple[Bucket, ...], deque[bytes]] = {}
        self.stats: dict[str, RuleStats] = {}
        self.seq = 0
        self._enabled: list[tuple[str, tuple[str, ...]]] = []
        self._prune_at = TAT_PRUNE_MIN

    # ------------------------------------------------------------------ loading

    def load(
        self, rules: list[tuple[str, bytes, int]], entries: list[tuple[bytes, int, int, str, str, str | None]]
    ) -> None:
        for pattern, data, tat in rules:
            self.rules[pattern] = Rule.decode(pattern, data)
            self.floor_tat_us[pattern] = self.stored_tat_us[pattern] = tat
        self._reindex()
        for raw, seq, running, service, handler, key in sorted(entries, key=lambda e: e[1]):
            target = (service, handler, key)
            self.entries[raw] = LimitEntry(seq, bool(running), target, self._matching(target))
            self.seq = max(self.seq, seq)
        self._recount()

    def _reindex(self) -> None:
        self._enabled = [(p, r.parts) for p, r in sorted(self.rules.items()) if not r.disabled and _limits(r)]

    def _matching(self, target: tuple[str, str, str | None]) -> tuple[Bucket, ...]:
        return tuple(bucket_of(p, parts, target) for p, parts in self._enabled if matches(parts, target))

    def _recount(self) -> None:
        """Counts and queues from the entries (after loading or a rule change)."""
        self.running = {}
        self.queues = {}
        for raw, e in sorted(self.entries.items(), key=lambda kv: kv[1].seq):
            if e.running:
                for b in e.buckets:
                    self.running[b] = self.running.get(b, 0) + 1
            else:
                self.queues.setdefault(e.buckets, deque()).append(raw)

    # ------------------------------------------------------------------ admission

    def arrive(self, raw: bytes, t: Target, now_ms: int, batch: WriteBatch) -> bool | None:
        """An invocation about to start: True when it may (a rule now counts it), False when it
        must wait (it is queued), None when no rule applies (nothing is recorded)."""
        if not self._enabled:
            return None
        target = target_parts(t)
        buckets = self._matching(target)
        if not buckets:
            return None
        self.seq += 1
        entry = LimitEntry(self.seq, False, target, buckets)
        self.entries[raw] = entry
        queue = self.queues.get(buckets)
        if not queue and self._take(buckets, now_ms, batch):
            entry.running = True
        else:
            self.queues.setdefault(buckets, deque()).append(raw)
            for p, _ in buckets:
                self._stats(p).delayed += 1
        batch.op(Op.LIMIT_PUT, raw, entry.seq, int(entry.running), *target)
        return entry.running

    def _tat(self, b: Bucket) -> int:
        tat = self.tat_us.get(b)
        return self.floor_tat_us.get(b[0], 0) if tat is None else tat

    def _blocked_until(self, buckets: tuple[Bucket, ...], now_ms: int) -> int | None:
        """None when every bucket lets one more start at `now_ms`; else when to try again (ms),
        or -1 when only a completion can free it."""
        now_us = now_ms * 1000
        wait_us = 0
        for b in buckets:
            r = self.rules[b[0]]
            if r.concurrency is not None and self.running.get(b, 0) >= r.concurrency:
                return -1
            if r.rate_per_s is not None:
                allowed_at = self._tat(b) - r.tolerance_us()
                wait_us = max(wait_us, allowed_at - now_us)
        if wait_us > 0:
            return (now_us + wait_us + 999) // 1000
        return None

    def _take(self, buckets: tuple[Bucket, ...], now_ms: int, batch: WriteBatch) -> bool:
        if self._blocked_until(buckets, now_ms) is not None:
            return False
        now_us = now_ms * 1000
        for b in buckets:
            p = b[0]
            r = self.rules[p]
            self._stats(p).admitted += 1
            if r.concurrency is not None:
                self.running[b] = self.running.get(b, 0) + 1
            if r.rate_per_s is not None:
                tat = max(self._tat(b), now_us) + r.interval_us()
                self.tat_us[b] = tat
                if tat > self.stored_tat_us.get(p, 0):
                    self.stored_tat_us[p] = tat
                    batch.op(Op.RULE_TAT, p, tat)
        if len(self.tat_us) > self._prune_at:
            self._prune(now_us)
        return True

    def _prune(self, now_us: int) -> None:
        """Forget buckets that are full again (TAT passed): memory stays bounded by the values
        active within burst / rate, however many keys a per-key rule has seen."""
        self.tat_us = {b: tat for b, tat in self.tat_us.items() if tat > now_us}
        self._prune_at = max(TAT_PRUNE_MIN, 2 * len(self.tat_us))

    def _stats(self, pattern: str) -> RuleStats:
        stats = self.stats.get(pattern)
        if stats is None:
            stats = self.stats[pattern] = RuleStats()
        return stats

    def release(self, raw: bytes, batch: WriteBatch) -> bool:
        """The invocation completed (or left its queue): True when it held or waited for a slot."""
        entry = self.entries.pop(raw, None)
        if entry is None:
            return False
        batch.op(Op.LIMIT_DELETE, raw)
        if entry.running:
            for b in entry.buckets:
                count = self.running.get(b)
                if count is not None:
                    if count > 1:
                        self.running[b] = count - 1
                    else:
                        del self.running[b]
        else:
            queue = self.queues.get(entry.buckets)
            if queue is not None and raw in queue:
                queue.remove(raw)
                if not queue:
                    del self.queues[entry.buckets]
        return True

    def ready(self, now_ms: int, batch: WriteBatch) -> tuple[list[bytes], int | None]:
        """Queued invocations that may start now (they now count), in queue order, and the
        earliest time a rate rule lets the next one go (None: no rate wait)."""
        started: list[bytes] = []
        wake_ms: int | None = None
        for buckets in list(self.queues):
            queue = self.queues[buckets]
            while queue:
                blocked = self._blocked_until(buckets, now_ms)
                if blocked is not None:
                    if blocked >= 0:
                        wake_ms = blocked if wake_ms is None else min(wake_ms, blocked)
                    break
                self._take(buckets, now_ms, batch)
                raw = queue.popleft()
                entry = self.entries[raw]
                entry.running = True
                batch.op(Op.LIMIT_PUT, raw, entry.seq, 1, *entry.target)
                started.append(raw)
            if not queue:
                del self.queues[buckets]
        return started, wake_ms

    def usage(self, now_ms: int) -> list[dict[str, Any]]:
        """One row per enabled rule, over all the values it counts: running, waiting, how many
        values it counts now (`buckets`), the fewest tokens any of its buckets has (rate rules),
        and the admitted and delayed counts since the processor started."""
        running: dict[str, int] = {}
        waiting: dict[str, int] = {}
        values: dict[str, set[tuple[str | None, ...]]] = {}
        for b, n in self.running.items():
            running[b[0]] = running.get(b[0], 0) + n
            values.setdefault(b[0], set()).add(b[1])
        for buckets, queue in self.queues.items():
            for b in buckets:
                waiting[b[0]] = waiting.get(b[0], 0) + len(queue)
                values.setdefault(b[0], set()).add(b[1])
        tokens: dict[str, float] = {}
        for b in self.tat_us:
            r = self.rules.get(b[0])
            if r is not None and r.rate_per_s is not None:
                left = r.tokens(self._tat(b), now_ms * 1000)
                tokens[b[0]] = min(tokens.get(b[0], left), left)
                if left < (r.burst or 1):
                    values.setdefault(b[0], set()).add(b[1])
        rows = []
        for p, _ in self._enabled:
            r = self.rules[p]
            stats = self.stats.get(p, RuleStats())
            full = None if r.rate_per_s is None else r.tokens(self.floor_tat_us.get(p, 0), now_ms * 1000)
            rows.append(
                {
                    "pattern": p,
                    "concurrency": r.concurrency,
                    "running": running.get(p, 0),
                    "waiting": waiting.get(p, 0),
                    "buckets": len(values.get(p, ())),
                    "rate_per_s": r.rate_per_s,
                    "burst": (r.burst or 1) if r.rate_per_s is not None else None,
                    "tokens": tokens.get(p, full),
                    "admitted": stats.admitted,
                    "delayed": stats.delayed,
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
                    self._forget_buckets(c.pattern)
                    batch.op(Op.RULE_DELETE, c.pattern)
                    out.append(c.pattern)
                continue
            rule = self._upserted(c, book_version, now_ms)
            self.rules[c.pattern] = rule
            batch.op(Op.RULE_PUT, c.pattern, rule.encode())
            if rule.rate_per_s is not None and c.pattern in self.stored_tat_us:
                self._rate_from_now(rule, now_ms, batch)
            out.append(rule)
        self._reindex()
        for e in self.entries.values():
            e.buckets = self._matching(e.target)
        self._recount()
        return out

    def _forget_buckets(self, pattern: str) -> None:
        self.floor_tat_us.pop(pattern, None)
        self.stored_tat_us.pop(pattern, None)
        self.tat_us = {b: tat for b, tat in self.tat_us.items() if b[0] != pattern}

    def _rate_from_now(self, rule: Rule, now_ms: int, batch: WriteBatch) -> None:
        """A new rate applies from now: a start the old (slower) rate put far ahead comes in."""
        cap = now_ms * 1000 + rule.interval_us()
        for b, tat in self.tat_us.items():
            if b[0] == rule.pattern and tat > cap:
                self.tat_us[b] = cap
        if rule.pattern in self.floor_tat_us:
            self.floor_tat_us[rule.pattern] = min(self.floor_tat_us[rule.pattern], cap)
        stored = min(self.stored_tat_us[rule.pattern], cap)
        self.stored_tat_us[rule.pattern] = stored
        batch.op(Op.RULE_TAT, rule.pattern, stored)

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
