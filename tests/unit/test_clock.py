"""The clock service on a fake clock: how many ticks, when, and what each one carries."""

from __future__ import annotations

import logging
import os
import signal
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from streams.clock import run_clock, tick_record
from streams.codec import catalogue
from streams.config import ROOT, Settings

SETTINGS = Settings(namespace="unit")
START = datetime(2026, 4, 1, 8, 0, 0, 123456, tzinfo=UTC)


class FakeTime:
    """A monotonic and a wall clock that only move when the code under test sleeps or
    publishes; `publish_cost` is how long each publish takes."""

    def __init__(self, publish_cost: float = 0.0) -> None:
        self.mono = 1000.0
        self.publish_cost = publish_cost
        self.sleeps: list[float] = []
        self.published: list[Mapping[str, Any]] = []
        self.published_at: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return START + timedelta(seconds=self.mono - 1000.0)

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.mono += seconds

    def publish(self, record: Mapping[str, Any]) -> None:
        self.published.append(record)
        self.published_at.append(self.mono - 1000.0)
        self.mono += self.publish_cost


def run(fake: FakeTime, interval: float, count: int | None, **extra: Any) -> int:
    return run_clock(
        SETTINGS,
        interval,
        count,
        now=fake.now,
        sleep=fake.sleep,
        monotonic=fake.monotonic,
        publish=fake.publish,
        **extra,
    )


def test_publishes_count_ticks_the_first_at_once() -> None:
    fake = FakeTime()
    assert run(fake, 10.0, 3) == 3
    assert fake.published_at == [0.0, 10.0, 20.0]
    assert fake.sleeps == [10.0, 10.0]


def test_zero_ticks_publishes_nothing() -> None:
    fake = FakeTime()
    assert run(fake, 10.0, 0) == 0
    assert fake.published == []


def test_publishing_time_does_not_accumulate_into_drift() -> None:
    fake = FakeTime(publish_cost=0.3)
    run(fake, 10.0, 50)
    assert fake.published_at == pytest.approx([10.0 * k for k in range(50)])
    assert fake.sleeps == pytest.approx([9.7] * 49)


def test_a_publish_lasting_exactly_one_interval_delays_nothing() -> None:
    fake = FakeTime(publish_cost=10.0)
    run(fake, 10.0, 3)
    assert fake.published_at == [0.0, 10.0, 20.0]
    assert fake.sleeps == []


def test_passed_slots_are_skipped_not_caught_up(caplog: pytest.LogCaptureFixture) -> None:
    fake = FakeTime(publish_cost=25.0)
    with caplog.at_level(logging.WARNING, logger="streams.clock"):
        run(fake, 10.0, 3)
    assert fake.published_at == [0.0, 30.0, 60.0]
    assert "2 tick(s) behind" in caplog.text


def test_occurred_at_is_now_at_publishing_and_reaches_on_tick() -> None:
    fake = FakeTime()
    seen: list[datetime] = []
    run(fake, 2.5, 3, on_tick=seen.append)
    expected = [START.replace(microsecond=123000) + timedelta(seconds=2.5 * k) for k in range(3)]
    assert [r["occurredAt"] for r in fake.published] == expected
    assert seen == expected


def test_tick_record_is_utc_truncated_to_the_millisecond() -> None:
    paris = timezone(timedelta(hours=2))
    record = tick_record(datetime(2026, 4, 1, 10, 0, 0, 999999, tzinfo=paris))
    assert record["occurredAt"] == datetime(2026, 4, 1, 8, 0, 0, 999000, tzinfo=UTC)
    assert record["occurredAt"].tzinfo is UTC
    assert uuid.UUID(record["eventId"]).version == 4


def test_every_tick_has_its_own_event_id() -> None:
    fake = FakeTime()
    run(fake, 1.0, 20)
    assert len({r["eventId"] for r in fake.published}) == 20


def test_tick_record_refuses_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tick_record(datetime(2026, 4, 1, 8, 0))


def test_tick_record_encodes_as_a_clock_tick() -> None:
    schemas = catalogue(ROOT / "schemas")
    record = tick_record(START)
    assert schemas.decode("clock.tick", schemas.encode("clock.tick", record)) == record


@pytest.mark.parametrize(
    ("interval", "count"), [(0.0, 1), (-1.0, 1), (float("nan"), 1), (float("inf"), 1), (1.0, -1)]
)
def test_refuses_a_bad_interval_or_count(interval: float, count: int) -> None:
    with pytest.raises(ValueError):
        run(FakeTime(), interval, count)


def test_without_count_runs_until_stopped() -> None:
    fake = FakeTime()
    stop = threading.Event()

    def on_tick(_: datetime) -> None:
        if len(fake.published) == 4:
            stop.set()

    assert run(fake, 1.0, None, on_tick=on_tick, stop=stop) == 4


def test_keyboard_interrupt_returns_the_ticks_sent() -> None:
    fake = FakeTime()

    def publish(record: Mapping[str, Any]) -> None:
        if len(fake.published) == 2:
            raise KeyboardInterrupt
        fake.publish(record)

    sent = run_clock(
        SETTINGS,
        1.0,
        None,
        now=fake.now,
        sleep=fake.sleep,
        monotonic=fake.monotonic,
        publish=publish,
    )
    assert sent == 2


def test_sigterm_stops_the_wait_at_once_and_restores_the_handler() -> None:
    published: list[Mapping[str, Any]] = []
    before = signal.getsignal(signal.SIGTERM)
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        # Real sleep (waiting on the stop event): the second tick is an hour away.
        sent = run_clock(SETTINGS, 3600.0, None, publish=published.append)
    finally:
        timer.cancel()
    assert sent == 1 and len(published) == 1
    assert signal.getsignal(signal.SIGTERM) is before
