"""Admission of attempts: slots, parking of idle attempts, fair turns between queues."""

from __future__ import annotations

from perdure.server.invoker.admission import Admission


def make(capacity: int = 2, parked_max: int = 10, park_idle_s: float = 1.0) -> Admission[str]:
    return Admission(capacity, parked_max=parked_max, park_idle_s=park_idle_s)


def test_attempts_start_while_slots_are_free_and_queue_after() -> None:
    adm = make()
    assert adm.offer("a", fresh=True, now=0.0)
    assert adm.offer("b", fresh=True, now=0.0)
    assert not adm.offer("c", fresh=True, now=0.0)
    assert (adm.active, adm.waiting) == (2, 1)
    assert adm.finish("a", now=0.5) == ["c"]
    assert (adm.active, adm.waiting) == (2, 0)


def test_an_idle_attempt_is_parked_to_make_room_once_idle_long_enough() -> None:
    adm = make()
    adm.offer("a", fresh=True, now=0.0)
    adm.offer("b", fresh=True, now=0.5)
    adm.offer("c", fresh=True, now=0.6)
    early = adm.make_room(now=0.7)
    assert early.park == [] and early.admitted == []
    assert early.next_check_s is not None and abs(early.next_check_s - 0.3) < 1e-9
    room = adm.make_room(now=1.0)
    assert room.park == ["a"] and room.admitted == ["c"]
    assert (adm.active, adm.parked, adm.waiting) == (2, 1, 0)
    # The parked attempt winding down frees nothing more: its slot was already given away.
    assert adm.finish("a", now=2.0) == []
    assert (adm.active, adm.parked) == (2, 0)


def test_an_attempt_with_an_open_run_is_never_parked() -> None:
    adm = make(capacity=1)
    adm.offer("busy", fresh=True, now=0.0)
    adm.activity("busy", parkable=False, now=0.1)
    adm.offer("new", fresh=True, now=0.2)
    room = adm.make_room(now=100.0)
    assert room.park == [] and room.admitted == [] and room.next_check_s is None
    adm.activity("busy", parkable=True, now=100.0)
    assert adm.make_room(now=100.5).park == []
    assert adm.make_room(now=101.0).park == ["busy"]


def test_activity_moves_an_attempt_to_the_back_of_the_idle_order() -> None:
    adm = make()
    adm.offer("a", fresh=True, now=0.0)
    adm.offer("b", fresh=True, now=0.1)
    adm.activity("a", parkable=True, now=0.2)
    adm.offer("c", fresh=True, now=0.3)
    assert adm.make_room(now=5.0).park == ["b"]


def test_parking_stops_at_the_bound_of_parked_attempts() -> None:
    adm = make(capacity=1, parked_max=1)
    adm.offer("a", fresh=True, now=0.0)
    adm.offer("b", fresh=True, now=0.0)
    adm.offer("c", fresh=True, now=0.0)
    first = adm.make_room(now=5.0)
    assert first.park == ["a"] and first.admitted == ["b"]
    assert adm.make_room(now=10.0).park == []  # "a" is still winding down
    adm.finish("a", now=11.0)
    assert adm.make_room(now=11.0).park == ["b"]


def test_new_invocations_and_resumptions_take_turns() -> None:
    adm = make(capacity=1)
    adm.offer("running", fresh=False, now=0.0)
    for i in range(3):
        adm.offer(f"resume{i}", fresh=False, now=0.0)
    adm.offer("new", fresh=True, now=0.0)
    order = []
    current = "running"
    for _ in range(4):
        (current,) = adm.finish(current, now=1.0)
        order.append(current)
    assert order[:2] == ["new", "resume0"] or order[:2] == ["resume0", "new"]
    assert order.index("new") <= 1


def test_a_queued_attempt_dropped_before_it_starts_leaves_no_trace() -> None:
    adm = make(capacity=1)
    adm.offer("a", fresh=True, now=0.0)
    adm.offer("b", fresh=True, now=0.0)
    assert adm.finish("b", now=0.1) == []
    assert adm.waiting == 0
    assert adm.finish("a", now=0.2) == []
    assert adm.active == 0


def test_a_first_attempt_starts_at_once_while_a_backlog_of_others_waits() -> None:
    adm = Admission(4, parked_max=10, park_idle_s=1.0, others_max=2)
    started = [adm.offer(f"resume{i}", fresh=False, now=0.0) for i in range(5000)]
    assert started[:2] == [True, True] and not any(started[2:])
    assert (adm.active, adm.waiting) == (2, 4998)
    assert adm.offer("new", fresh=True, now=0.0)  # a free slot: the others' share is full
    assert adm.offer("new2", fresh=True, now=0.0)
    assert not adm.offer("new3", fresh=True, now=0.0)  # every slot taken now
    assert adm.finish("resume0", now=0.5) in (["new3"], ["resume2"])


def test_past_their_share_other_attempts_park_idle_others_not_first_attempts() -> None:
    adm = Admission(4, parked_max=10, park_idle_s=1.0, others_max=2)
    adm.offer("new", fresh=True, now=0.0)  # idle the longest, but a first attempt
    adm.offer("r0", fresh=False, now=0.1)
    adm.offer("r1", fresh=False, now=0.2)
    adm.offer("r2", fresh=False, now=0.3)
    room = adm.make_room(now=5.0)
    # r0 is parked, but the service still runs it until it ends: its share is not free yet.
    assert room.park == ["r0"] and room.admitted == []
    assert (adm.active, adm.parked, adm.waiting) == (2, 1, 1)
    assert adm.make_room(now=6.0).park == []  # one winding down is enough for one waiter
    assert adm.finish("r0", now=6.5) == ["r2"]
    assert (adm.active, adm.parked, adm.waiting) == (3, 0, 0)


def test_parked_other_attempts_count_against_their_share_until_they_end() -> None:
    # A slow service: resumed attempts silent for longer than the park delay are parked, but no
    # more than the share of them is ever in flight (parking does not stop the service's work).
    adm = Admission(10, parked_max=100, park_idle_s=0.25, others_max=8)
    for i in range(50):
        adm.offer(f"r{i}", fresh=False, now=0.0)
    started = set()
    for step in range(1, 40):
        started.update(adm.make_room(now=step * 1.0).admitted)
        assert adm.active + adm.parked <= 8
    assert started == set()  # nobody ended: nobody else started
    assert (adm.active, adm.parked) == (6, 2)  # at most a quarter of the share parked at once


def test_other_attempts_inside_a_run_leave_the_share_to_the_next_resumptions() -> None:
    # Resumed attempts busy in long `ctx.run`s are past their replay: they keep their slots,
    # not the others' share, so the resumptions behind them start (bounded by the slots).
    adm = Admission(6, parked_max=10, park_idle_s=1.0, others_max=2)
    started = [adm.offer(f"r{i}", fresh=False, now=0.0) for i in range(8)]
    assert started[:2] == [True, True] and not any(started[2:])
    assert adm.activity("r0", parkable=False, now=0.1)  # r0 opened a run: room in the share
    assert adm.make_room(now=0.1).admitted == ["r2"]
    assert not adm.activity("r0", parkable=False, now=0.2)  # still the same run
    for token in ("r1", "r2"):
        adm.activity(token, parkable=False, now=0.3)
    assert adm.make_room(now=0.3).admitted == ["r3", "r4"]
    assert (adm.active, adm.waiting) == (5, 3)
    adm.activity("r0", parkable=True, now=0.4)  # its run ended: r0 counts against the share again
    assert adm.make_room(now=0.4).admitted == []  # share full (r0, r3, r4 hold it)
    assert adm.offer("new", fresh=True, now=0.4)  # the last slot: a first attempt's
    assert adm.finish("r1", now=0.5) == []  # a slot freed, but the share is still full
    assert adm.finish("r3", now=0.6) == []  # r0 and r4 still fill the share of 2
    assert adm.finish("r4", now=0.7) == ["r5"]
