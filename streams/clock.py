"""The clock service (spec §8): one `clock.tick` to every partition of `clock.ticks`, at a fixed
wall-clock interval.

Stages know no wall time: a timer fires when a tick whose `occurredAt` reaches its deadline is
processed. This service is the one place where wall time enters the pipeline, so it decides three
things:

- a tick's `occurredAt` is the wall time at which it is published, truncated to the millisecond
  that `timestamp-millis` carries, so the record that is logged is the record on the wire;
- ticks are scheduled on a monotonic clock at `start + k × interval`, not by sleeping `interval`
  after each publish, so publishing time does not accumulate into drift, and a wall-clock step
  (NTP, DST) neither bunches nor stalls the ticks;
- a tick whose slot has passed (the process was suspended, the broker was slow) is not caught up:
  a burst of late ticks would carry nearly the same `occurredAt` and fire nothing more than the
  next tick does, so the schedule skips to the next slot still ahead.

Every partition gets every tick (`kafka_io.publish_records` does the fan-out) because a stage's
timers live on the partition of their MRN and only a tick on that partition can fire them.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from streams.codec import catalogue
from streams.config import Settings
from streams.kafka_io import producer, publish_records

log = logging.getLogger(__name__)

TICK = "clock.tick"

Publish = Callable[[Mapping[str, Any]], None]


def utc_now() -> datetime:
    return datetime.now(UTC)


def tick_record(occurred_at: datetime) -> dict[str, Any]:
    """An Avro-native `clock.tick` at `occurred_at` (aware), in UTC truncated to the millisecond."""
    if occurred_at.tzinfo is None:
        raise ValueError("a tick's occurredAt must be timezone-aware")
    instant = occurred_at.astimezone(UTC)
    instant = instant.replace(microsecond=instant.microsecond // 1000 * 1000)
    return {"eventId": str(uuid.uuid4()), "occurredAt": instant}


def kafka_publisher(settings: Settings) -> tuple[Publish, Callable[[], None]]:
    """A publisher of one tick to every partition of the namespace's `clock.ticks`, and a closer.

    One producer serves every tick; `publish_records` flushes after each one, so a tick is on
    the broker before the clock sleeps, and looks the partitions up each time, so partitions
    added while the clock runs get ticks too.
    """
    schemas = catalogue(settings.schemas_dir)
    client = producer(settings)

    def publish(record: Mapping[str, Any]) -> None:
        publish_records(settings, schemas, TICK, [record], client=client)

    def close() -> None:
        client.flush(10)

    return publish, close


@contextmanager
def stop_on_signals(
    stop: threading.Event, signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT)
) -> Iterator[threading.Event]:
    """Within the block, `signals` set `stop` instead of killing the process or raising
    KeyboardInterrupt in the middle of a produce; previous handlers come back on exit.

    Python only lets the main thread install handlers: elsewhere this does nothing, and whoever
    owns the thread sets `stop` itself.
    """
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, lambda signum, frame: stop.set()) for s in signals}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_clock(
    settings: Settings,
    interval: float,
    count: int | None = None,
    *,
    now: Callable[[], datetime] = utc_now,
    sleep: Callable[[float], object] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    on_tick: Callable[[datetime], None] | None = None,
    publish: Publish | None = None,
    stop: threading.Event | None = None,
) -> int:
    """Publish a tick every `interval` seconds, the first at once; return the number published.

    Publishes `count` ticks then returns, or with `count=None` runs until `stop` is set, SIGTERM
    or SIGINT (when called from the main thread), or KeyboardInterrupt. `occurredAt` is `now()`
    at publishing; `on_tick` receives it once the tick is on the broker. `sleep` defaults to
    waiting on `stop`, so a stop request does not wait for the end of an interval; `publish`
    defaults to `kafka_publisher(settings)`. Raises LookupError if `clock.ticks` does not exist.
    """
    if not interval > 0 or not math.isfinite(interval):
        raise ValueError(f"the tick interval must be a positive number of seconds, not {interval}")
    if count is not None and count < 0:
        raise ValueError(f"the tick count must be 0 or more, not {count}")
    stop = stop or threading.Event()
    wait: Callable[[float], object] = sleep or stop.wait
    close: Callable[[], None] | None = None
    if publish is None:
        publish, close = kafka_publisher(settings)
    sent = 0
    try:
        with stop_on_signals(stop):
            start = monotonic()
            slot = 0
            while (count is None or sent < count) and not stop.is_set():
                delay = start + slot * interval - monotonic()
                if delay > 0:
                    wait(delay)
                    if stop.is_set():
                        break
                record = tick_record(now())
                publish(record)
                sent += 1
                if on_tick is not None:
                    on_tick(record["occurredAt"])
                slot = _next_slot(start, slot, interval, monotonic(), settings.namespace)
    except KeyboardInterrupt:
        pass
    finally:
        if close is not None:
            close()
    return sent


def _next_slot(start: float, slot: int, interval: float, current: float, namespace: str) -> int:
    due = slot + 1
    # The first slot not yet passed; the slots before it would all be published late at once.
    ahead = math.ceil((current - start) / interval)
    if ahead > due:
        log.warning(
            "clock of %s fell %d tick(s) behind; skipping to the next slot", namespace, ahead - due
        )
        return ahead
    return due
