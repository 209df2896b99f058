"""The sync loop's bookkeeping: where each partition stands (Positions) and when a partition counts
as stalled (StallDetector). Pure: the same sequences the real stack plays in
tests/integration/test_new_topics.py, but every interleaving on demand."""

from __future__ import annotations

import pytest

from cdc.sync.positions import Positions
from cdc.sync.stall import MAX_STEP, StallDetector, Stalled

A = ("cdc.s.a", 0)
B = ("cdc.s.b", 0)


def positioned(*partitions: tuple[tuple[str, int], int]) -> Positions:
    positions = Positions()
    positions.assigned(p for p, _ in partitions)
    for partition, offset in partitions:
        positions.positioned(partition, offset, stored=True)
    return positions


# -- Positions -----------------------------------------------------------------------------------
def test_records_of_a_positioned_partition_are_taken_in_order_and_move_it() -> None:
    positions = positioned((A, 10))
    assert [positions.take(A, o) for o in (10, 11, 12)] == [True, True, True]
    assert positions.next == {A: 13}
    assert positions.moved() == {A: 13}
    positions.committed({A: 13})
    assert positions.moved() == {}


def test_a_record_read_again_after_a_seek_is_not_taken_twice() -> None:
    positions = positioned((A, 10))
    assert positions.take(A, 10) and positions.take(A, 11)
    assert not positions.take(A, 10)  # redelivered: already in the buffer
    assert positions.take(A, 12)


def test_a_gap_in_offsets_is_taken_as_it_comes() -> None:
    """Transaction markers and compaction leave offsets without records."""
    positions = positioned((A, 10))
    assert positions.take(A, 15)
    assert positions.next == {A: 16}


def test_a_record_of_an_unknown_partition_is_not_taken_but_marks_it_to_be_positioned() -> None:
    """The stall of issue 7: after a revoke whose assignment never came, the consumer kept fetching
    and every record was dropped while its position moved on. Now the partition waits to be
    positioned (the loop seeks it back to the stored offset) and says so once."""
    positions = positioned((A, 10))
    positions.revoked([A])
    assert not positions.take(A, 10)
    assert not positions.take(A, 11)
    assert positions.waiting == {A}
    assert positions.strays == {A}
    positions.positioned(A, 7, stored=True)
    assert positions.strays == set()
    assert positions.waiting == set()
    assert positions.take(A, 7)


def test_records_of_an_assigned_partition_waiting_for_its_position_are_not_strays() -> None:
    positions = Positions()
    positions.assigned([A])
    assert not positions.take(A, 0)
    assert positions.waiting == {A}
    assert positions.strays == set()


def test_an_assignment_without_a_revoke_keeps_the_next_offset() -> None:
    """kafka-python can call on_partitions_assigned again without a revoke (a stale assignment):
    the buffer still holds the partition's records, so it resumes from its own next offset, not
    from the older stored one (which would apply them twice on a keyless table)."""
    positions = positioned((A, 10))
    assert positions.take(A, 10) and positions.take(A, 11)
    positions.assigned([A])
    assert positions.waiting == {A}
    assert positions.next == {A: 12}
    assert not positions.take(A, 11)


def test_a_revoked_partition_is_forgotten_and_its_commit_ignored() -> None:
    positions = positioned((A, 10), (B, 20))
    assert positions.take(A, 10)
    moved = positions.moved()
    positions.revoked([A])
    positions.committed(moved)
    assert positions.stored == {B: 20}
    assert positions.moved() == {}


def test_waiting_partitions_the_consumer_does_not_read_are_forgotten() -> None:
    positions = Positions()
    positions.assigned([A, B])
    positions.forget_waiting([B])
    assert positions.waiting == {A}


# -- StallDetector -------------------------------------------------------------------------------
def run_clock(detector: StallDetector, seconds: float, step: float = 0.1, start: float = 1000.0) -> float:
    now = start
    detector.tick(now)
    for _ in range(round(seconds / step)):
        now += step
        detector.tick(now)
    return now


def test_a_partition_behind_whose_position_does_not_move_is_stalled_after_the_limit() -> None:
    detector = StallDetector(limit=10)
    ends, stored = {A: 50, B: 20}, {A: 5}
    assert detector.check(ends, {A: 5, B: 20}, stored) == []
    run_clock(detector, 9.5)
    assert detector.check(ends, {A: 5, B: 20}, stored) == []
    run_clock(detector, 1.0, start=2000.0)
    assert detector.check(ends, {A: 5, B: 20}, stored) == [Stalled(A, 5, 50, 5)]


def test_a_moving_partition_is_never_stalled() -> None:
    detector = StallDetector(limit=10)
    for position in range(0, 40, 2):
        detector.check({A: 1000}, {A: position}, {})
        run_clock(detector, 2.0, start=position * 100.0)
    assert detector.check({A: 1000}, {A: 41}, {}) == []


def test_a_partition_with_an_unknown_position_is_stalled_too() -> None:
    detector = StallDetector(limit=5)
    detector.check({A: 30}, {}, {})
    run_clock(detector, 6)
    (stalled,) = detector.check({A: 30}, {}, {})
    assert stalled.describe() == "cdc.s.a[0] position unknown, end 30, nothing stored"


def test_a_partition_at_its_end_is_not_stalled_however_long_it_waits() -> None:
    detector = StallDetector(limit=5)
    detector.check({A: 30}, {A: 30}, {A: 30})
    run_clock(detector, 60)
    assert detector.check({A: 30}, {A: 30}, {A: 30}) == []


def test_time_blocked_outside_the_poll_counts_at_most_one_step_an_iteration() -> None:
    """A flush retrying for minutes against an unreachable warehouse is not a stall."""
    detector = StallDetector(limit=10)
    detector.check({A: 50}, {A: 5}, {})
    now = 0.0
    detector.tick(now)
    for _ in range(5):
        now += 120.0  # each iteration blocked two minutes
        detector.tick(now)
    assert detector.clock == pytest.approx(5 * MAX_STEP)
    assert detector.check({A: 50}, {A: 5}, {}) == []


def test_no_assignment_is_timed_from_the_first_check_without_one() -> None:
    detector = StallDetector(limit=10)
    assert detector.unassigned_for() == 0
    run_clock(detector, 4)
    assert detector.unassigned_for() == pytest.approx(4)
    detector.check({A: 1}, {A: 1}, {})  # an assignment resets it
    assert detector.unassigned_for() == 0


def test_a_record_from_behind_the_next_offset_is_recorded_as_a_rewind() -> None:
    """Nothing cdc does seeks behind a partition's next offset: a consumer that went back by itself
    (a topic made again, a log cut back) is reported, not skipped in silence."""
    positions = positioned((A, 10))
    assert positions.take(A, 10) and positions.take(A, 11)
    assert not positions.take(A, 0)
    assert not positions.take(A, 1)
    assert positions.rewound == {A: (0, 12)}


def test_a_revoke_forgets_that_a_partition_was_a_stray() -> None:
    positions = Positions()
    assert not positions.take(A, 3)
    positions.revoked([A])
    assert positions.strays == set() and positions.waiting == set()


def test_an_iteration_whose_poll_came_back_full_adds_no_reading_time() -> None:
    """A backlog larger than one batch: partitions are served in turn, and one may wait for its."""
    detector = StallDetector(limit=10)
    detector.tick(0.0)
    for second in range(1, 100):
        detector.tick(float(second), busy=True)
    assert detector.clock == 0
    detector.tick(99.5)
    assert detector.clock == pytest.approx(0.5)


def test_an_empty_partition_without_a_position_is_not_stalled() -> None:
    detector = StallDetector(limit=5)
    detector.check({A: 0, B: 7}, {}, {B: 7})
    run_clock(detector, 6)
    assert detector.check({A: 0, B: 7}, {}, {B: 7}) == []
