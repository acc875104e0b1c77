"""The rule book (perdure/server/processor/limits.py), sans-IO: a rule with n components counts
each value of the first n of (service, handler, key) on its own (Restate's levels), a key rule
applies to keyed invocations only, per-key token buckets, the stored TAT after a restart, and
the usage rows /metrics reads."""

from __future__ import annotations

import pytest

from perdure.server.processor.batch import Op, WriteBatch
from perdure.server.processor.commands import RuleChange
from perdure.server.processor.limits import Limits
from perdure.server.processor.model import Target

T0_MS = 1_000_000


def svc(handler: str) -> Target:
    return Target("Svc", handler, None, "SERVICE", None)


def obj(handler: str, key: str) -> Target:
    return Target("Obj", handler, key, "VIRTUAL_OBJECT", "exclusive")


def book(*changes: RuleChange) -> Limits:
    limits = Limits()
    limits.change(list(changes), T0_MS, WriteBatch())
    return limits


class Ids:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> bytes:
        self.n += 1
        return self.n.to_bytes(24, "big")


@pytest.fixture
def new_id() -> Ids:
    return Ids()


def test_a_handler_wildcard_counts_each_handler_on_its_own(new_id: Ids) -> None:
    limits = book(RuleChange("Svc/*", concurrency=1))
    b = WriteBatch()
    assert limits.arrive(new_id(), svc("a"), T0_MS, b) is True
    assert limits.arrive(new_id(), svc("b"), T0_MS, b) is True, "another handler has its own count"
    assert limits.arrive(new_id(), svc("a"), T0_MS, b) is False


def test_a_service_rule_counts_all_its_handlers_together(new_id: Ids) -> None:
    limits = book(RuleChange("Svc", concurrency=1))
    b = WriteBatch()
    first = new_id()
    assert limits.arrive(first, svc("a"), T0_MS, b) is True
    waiting = new_id()
    assert limits.arrive(waiting, svc("b"), T0_MS, b) is False
    limits.release(first, b)
    assert limits.ready(T0_MS, b) == ([waiting], None)


def test_a_global_wildcard_is_a_default_per_service(new_id: Ids) -> None:
    limits = book(RuleChange("*", concurrency=1))
    b = WriteBatch()
    assert limits.arrive(new_id(), svc("a"), T0_MS, b) is True
    assert limits.arrive(new_id(), obj("a", "k"), T0_MS, b) is True
    assert limits.arrive(new_id(), svc("b"), T0_MS, b) is False


def test_a_key_rule_has_a_token_bucket_per_key(new_id: Ids) -> None:
    limits = book(RuleChange("Obj/run/*", rate_per_s=1.0, burst=2))
    b = WriteBatch()
    for key in ("a", "b"):
        assert limits.arrive(new_id(), obj("run", key), T0_MS, b) is True
        assert limits.arrive(new_id(), obj("run", key), T0_MS, b) is True
    third_a = new_id()
    assert limits.arrive(third_a, obj("run", "a"), T0_MS, b) is False
    assert limits.arrive(new_id(), obj("run", "c"), T0_MS, b) is True, "a new key has a full bucket"
    assert limits.ready(T0_MS, b) == ([], T0_MS + 1000)
    started, _ = limits.ready(T0_MS + 1000, b)
    assert started == [third_a]


def test_a_key_rule_does_not_apply_to_unkeyed_services(new_id: Ids) -> None:
    limits = book(RuleChange("*/*/*", concurrency=1))
    b = WriteBatch()
    assert limits.arrive(new_id(), svc("a"), T0_MS, b) is None
    assert limits.arrive(new_id(), obj("a", "k"), T0_MS, b) is True
    assert limits.arrive(new_id(), obj("a", "k"), T0_MS, b) is False
    assert limits.arrive(new_id(), obj("a", "other"), T0_MS, b) is True


def test_the_rule_stores_its_buckets_latest_tat_and_a_restart_never_admits_more(new_id: Ids) -> None:
    limits = book(RuleChange("Obj/run/*", rate_per_s=10.0, burst=1))
    b = WriteBatch()
    assert limits.arrive(new_id(), obj("run", "a"), T0_MS, b) is True
    assert limits.arrive(new_id(), obj("run", "b"), T0_MS + 50, b) is True
    stored = [args for op, args in b.ops if op == Op.RULE_TAT]
    assert stored[-1] == ("Obj/run/*", (T0_MS + 50) * 1000 + 100_000)
    rule = limits.rules["Obj/run/*"]
    restarted = Limits()
    restarted.load([("Obj/run/*", rule.encode(), stored[-1][1])], [])
    b2 = WriteBatch()
    assert restarted.arrive(new_id(), obj("run", "a"), T0_MS + 60, b2) is False, "no second start for a"
    assert restarted.ready(T0_MS + 60, b2) == ([], T0_MS + 150)


def test_usage_counts_running_waiting_tokens_admitted_and_delayed(new_id: Ids) -> None:
    limits = book(RuleChange("Obj/*/*", concurrency=1, rate_per_s=2.0, burst=4))
    b = WriteBatch()
    assert limits.arrive(new_id(), obj("run", "a"), T0_MS, b) is True
    assert limits.arrive(new_id(), obj("run", "a"), T0_MS, b) is False
    assert limits.arrive(new_id(), obj("run", "b"), T0_MS, b) is True
    (row,) = limits.usage(T0_MS)
    assert (row["running"], row["waiting"], row["buckets"]) == (2, 1, 2)
    assert (row["admitted"], row["delayed"]) == (2, 1)
    assert row["tokens"] == pytest.approx(3.0), "each bucket spent one of four"
    (later,) = limits.usage(T0_MS + 250)
    assert later["tokens"] == pytest.approx(3.5), "refilling at 2/s"
