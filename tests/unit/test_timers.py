"""The decision stage's in-memory timer index: what is due, in which order, per partition."""

from __future__ import annotations

import pytest

from streams.timers import TimerIndex


def index(*entries: tuple[int, int, str]) -> TimerIndex:
    timers = TimerIndex()
    for partition, deadline, key in entries:
        timers.add(partition, deadline, key)
    return timers


def test_due_returns_the_keys_at_or_before_now_by_deadline_then_key() -> None:
    timers = index((0, 300, "c"), (0, 100, "b"), (0, 200, "a"), (0, 100, "a"), (0, 301, "d"))
    assert timers.due(0, 300) == ["a", "b", "c"]  # 100:a, 100:b, 200:a (seen), 300:c
    assert timers.due(0, 300) == []  # popped
    assert timers.pending(0) == 1
    assert timers.due(0, 10_000) == ["d"]


@pytest.mark.parametrize(("now", "expected"), [(99, []), (100, ["k"]), (101, ["k"])])
def test_a_deadline_is_due_at_exactly_its_time(now: int, expected: list[str]) -> None:
    assert index((0, 100, "k")).due(0, now) == expected


def test_a_key_added_twice_is_returned_once() -> None:
    timers = index((0, 100, "k"), (0, 100, "k"), (0, 150, "k"))
    assert timers.pending() == 3
    assert timers.due(0, 200) == ["k"]
    assert timers.pending() == 0


def test_a_later_deadline_of_a_due_key_stays_pending() -> None:
    timers = index((0, 100, "k"), (0, 500, "k"))
    assert timers.due(0, 200) == ["k"]
    assert timers.pending(0) == 1
    assert timers.due(0, 499) == []
    assert timers.due(0, 500) == ["k"]


def test_partitions_are_separate() -> None:
    timers = index((0, 100, "on-0"), (1, 50, "on-1"), (2, 500, "on-2"))
    assert timers.due(0, 1_000) == ["on-0"]
    assert timers.pending(1) == 1 and timers.pending(2) == 1
    assert timers.due(1, 1_000) == ["on-1"]
    assert timers.due(3, 1_000) == []  # a partition never seen
    assert timers.pending() == 1


def test_rebuild_replaces_the_contents_and_marks_the_index_built() -> None:
    timers = index((0, 100, "old"), (5, 100, "gone"))
    assert not timers.built  # adding is not building
    timers.rebuild([(0, 300, "z"), (0, 200, "y"), (1, 100, "x"), (0, 200, "y")])
    assert timers.built
    assert timers.pending() == 4
    assert timers.due(5, 1_000) == []
    assert timers.due(0, 1_000) == ["y", "z"]
    assert timers.due(1, 1_000) == ["x"]


def test_rebuild_from_nothing_is_built_and_empty() -> None:
    timers = index((0, 100, "old"))
    timers.rebuild(iter(()))
    assert timers.built
    assert timers.pending() == 0
    assert timers.due(0, 1_000) == []


def test_clear_empties_the_index_and_asks_for_a_rebuild() -> None:
    timers = TimerIndex()
    timers.rebuild([(0, 100, "a"), (1, 100, "b")])
    timers.clear()
    assert not timers.built
    assert timers.pending() == 0
    assert timers.due(0, 1_000) == [] and timers.due(1, 1_000) == []
    timers.add(0, 10, "c")  # usable after a clear
    assert timers.due(0, 10) == ["c"]
