"""Partition placement over live nodes: every node computes the same balanced answer, a join
moves few partitions, and a node's step only takes free or expired leases."""

from __future__ import annotations

from perdure.server.cluster.placement import Lease, place, plan


def test_placement_is_balanced_within_one_and_the_same_for_every_order() -> None:
    for n in range(1, 9):
        nodes = [f"node-{i}" for i in range(n)]
        target = place(64, nodes)
        counts = [target.count(x) for x in nodes]
        assert sum(counts) == 64 and max(counts) - min(counts) <= 1
        assert place(64, list(reversed(nodes))) == target


def test_a_joining_node_moves_only_about_its_share() -> None:
    before = place(64, ["a", "b"])
    after = place(64, ["a", "b", "c"])
    moved = sum(1 for x, y in zip(before, after, strict=True) if x != y)
    assert after.count("c") == 21
    assert moved <= 32  # bounded-load rendezvous: far from a full reshuffle


def test_no_live_node_places_nothing() -> None:
    assert place(4, []) == [None] * 4


def test_a_step_acquires_free_or_expired_leases_and_releases_at_most_the_budget() -> None:
    leases = [Lease("a", True)] * 64
    step = plan("b", ["a", "b"], leases, set(), moves_max=8)
    assert step == type(step)([], [])  # all held live by a: wait for a to release
    mine = [p for p, x in enumerate(place(64, ["a", "b"])) if x == "b"]
    freed = [Lease(None, False) if p in mine[:5] else Lease("a", True) for p in range(64)]
    assert plan("b", ["a", "b"], freed, set(), moves_max=8).acquire == mine[:5]
    # a holds everything: it gives b's share back, 8 at a time
    step = plan("a", ["a", "b"], leases, set(range(64)), moves_max=8)
    assert step.release == mine[:8] and step.acquire == []
    # a node restarted under the same name takes its own live leases back at once
    assert plan("b", ["b"], [Lease("b", True)] * 64, set(), moves_max=8).acquire == list(range(64))
