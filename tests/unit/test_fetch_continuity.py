"""Each fetched input knows the offset its fetch had reached before it, and the stage's consumer
fetches a partition again rather than step over inputs that never reached the stream."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.app import LockedCommitConsumer, make_app, make_context
from streams.config import Settings
from streams.fetch_continuity import DrainedRecords, FetchedMessage, FetchStarts, skips_inputs
from tests.unit.test_eager_delivery import consumer

TOPIC = "cont.declarations.accepted"
PARTITION = TP(TOPIC, 0)


def record(offset: int) -> Any:
    return SimpleNamespace(
        topic=TOPIC,
        partition=0,
        offset=offset,
        timestamp=1_700_000_000_123,
        timestamp_type=0,
        headers=[("h", b"v")],
        key=b"k%d" % offset,
        value=b"v%d" % offset,
        checksum=None,
        serialized_key_size=3,
        serialized_value_size=3,
    )


def drained(offsets: list[int], start: int, end: int) -> DrainedRecords:
    return DrainedRecords([record(o) for o in offsets], start, end)


def fake_broker(
    c: LockedCommitConsumer,
    begins_at: int | Exception,
    on_seek: Callable[[int], None] = lambda offset: None,
) -> list[tuple[TP, int]]:
    """Stand in for the broker behind `c`: where each partition begins (or the error asking
    raises), and every seek, recorded in the list returned and then passed to `on_seek`."""
    seeks: list[tuple[TP, int]] = []

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        if isinstance(begins_at, Exception):
            raise begins_at
        return {tp: begins_at for tp in tps}

    async def seek(partition: TP, offset: int) -> None:
        seeks.append((partition, offset))
        on_seek(offset)

    c.earliest_offsets = earliest_offsets  # type: ignore[method-assign]
    c.seek = seek  # type: ignore[method-assign]
    return seeks


def test_the_first_record_carries_the_drain_start_and_each_next_the_one_before() -> None:
    starts = FetchStarts()
    # Offsets 10 and 11 were a transaction's marker and an aborted record: not handed over.
    starts.begin({PARTITION: drained([12, 13], start=10, end=14)})
    first, second = (starts.message(PARTITION, record(o), generation_id=3) for o in (12, 13))
    assert (first.fetched_from, second.fetched_from) == (10, 13)
    # After a seek, the next drain does not join up: it begins where it began.
    starts.begin({PARTITION: drained([20], start=15, end=21)})
    assert starts.message(PARTITION, record(20), generation_id=3).fetched_from == 15


def test_a_drain_that_joins_up_follows_the_last_input_of_the_one_before() -> None:
    starts = FetchStarts()
    # The first drain ends past the marker at 6 that follows its last input, 5.
    starts.begin({PARTITION: drained([4, 5], start=4, end=7)})
    starts.message(PARTITION, record(4), generation_id=1)
    starts.message(PARTITION, record(5), generation_id=1)
    starts.begin({PARTITION: drained([7, 8], start=7, end=9)})
    nxt = starts.message(PARTITION, record(7), generation_id=1)
    assert nxt.fetched_from == 6 and not skips_inputs(nxt, 6)


def test_a_drain_whose_inputs_never_became_messages_is_not_stepped_over() -> None:
    starts = FetchStarts()
    starts.begin({PARTITION: drained([4], start=4, end=5)})
    starts.message(PARTITION, record(4), generation_id=1)
    # Faust dropped this drain, or the end of it, before making its records into messages.
    starts.begin({PARTITION: drained([5, 6, 7], start=5, end=8)})
    starts.message(PARTITION, record(5), generation_id=1)
    starts.begin({PARTITION: drained([8], start=8, end=9)})
    nxt = starts.message(PARTITION, record(8), generation_id=1)
    assert nxt.fetched_from == 8 and skips_inputs(nxt, 6)


def test_a_fetched_message_is_faust_s_consumer_message_with_its_fields() -> None:
    starts = FetchStarts()
    starts.begin({PARTITION: drained([7], start=7, end=8)})
    message = starts.message(PARTITION, record(7), generation_id=4)
    assert isinstance(message, FetchedMessage)
    assert (message.topic, message.partition, message.offset) == (TOPIC, 0, 7)
    assert (message.key, message.value, message.headers) == (b"k7", b"v7", [("h", b"v")])
    assert message.timestamp == 1_700_000_000.123
    assert (message.tp, message.generation_id) == (PARTITION, 4)


def test_an_input_is_processed_only_when_nothing_before_its_fetch_start_is_missing() -> None:
    starts = FetchStarts()
    starts.begin({PARTITION: drained([12, 13], start=10, end=14)})
    first, second = (starts.message(PARTITION, record(o), generation_id=1) for o in (12, 13))
    # Next to process 10 or 11: only the marker and the aborted record lie before 12.
    assert not skips_inputs(first, 10)
    assert not skips_inputs(first, 11)
    # Next to process 9: the fetch began past an input this stage never had.
    assert skips_inputs(first, 9)
    # The second needs the first processed.
    assert skips_inputs(second, 12)
    assert not skips_inputs(second, 13)


def test_a_message_whose_fetch_start_is_unknown_is_not_held_back() -> None:
    starts = FetchStarts()
    starts.begin({PARTITION: [record(30)]})  # a plain list: no start known
    assert starts.message(PARTITION, record(30), generation_id=1).fetched_from is None
    assert not skips_inputs(SimpleNamespace(offset=30), 5)


def test_the_consumer_makes_fetched_messages(tmp_path: Path) -> None:
    c = consumer(tmp_path)
    c._fetch_starts.begin({PARTITION: drained([5], start=4, end=6)})
    message = c._to_message(PARTITION, record(5))
    assert isinstance(message, FetchedMessage) and message.fetched_from == 4


def test_a_partition_is_fetched_again_once_per_missing_offset(tmp_path: Path) -> None:
    c = consumer(tmp_path)
    seeks = fake_broker(c, begins_at=0)

    async def main() -> None:
        # Every input fetched past offset 338 asks; the partition is fetched again once.
        for _ in range(3):
            await c.refetch(PARTITION, 338)
        # Later, another input missing from a further offset: fetched again from there.
        await c.refetch(PARTITION, 400)

    asyncio.run(main())
    assert seeks == [(PARTITION, 338), (PARTITION, 400)]


def test_inputs_deleted_by_retention_are_stepped_over_without_a_seek(tmp_path: Path) -> None:
    c = consumer(tmp_path)
    seeks = fake_broker(c, begins_at=500)
    asyncio.run(c.refetch(PARTITION, 338))
    assert seeks == []
    assert c.processed_until(PARTITION) == 500


def test_the_stage_processes_every_input_once_in_order_across_a_dropped_drain(
    tmp_path: Path,
) -> None:
    settings = Settings(namespace="cont", store="memory://", state_dir=tmp_path, partitions=1)
    app = make_app("decision", settings)
    app.finalize()
    app.__dict__["in_transaction"] = True  # as in a worker: the consumer's bookkeeping applies
    ctx = make_context("decision", settings, app)
    c = app.consumer
    assert isinstance(c, LockedCommitConsumer)
    c._committed_offset[PARTITION] = 0
    c.inputs_open().set()
    starts = c._fetch_starts
    delivered: asyncio.Queue[Any] = asyncio.Queue()

    def deliver(batch: DrainedRecords) -> None:
        starts.begin({PARTITION: batch})
        for r in batch:
            delivered.put_nowait(SimpleNamespace(message=c._to_message(PARTITION, r)))

    # Fetched again from the offset sought, the inputs Faust dropped come back.
    seeks = fake_broker(
        c, begins_at=0, on_seek=lambda offset: deliver(drained([2, 3, 4, 5, 6], offset, 7))
    )

    class Stream:
        channel = SimpleNamespace(queue=SimpleNamespace(empty=lambda: False))

        async def events(self) -> Any:
            while True:
                yield await delivered.get()

    handled: list[int] = []

    async def handle(message: Any) -> None:
        handled.append(message.offset)

    async def main() -> None:
        deliver(drained([0, 1], start=0, end=2))
        # Inputs 2-4 were drained and dropped before they reached the stream; this drain
        # comes from the position past them.
        deliver(drained([5, 6], start=5, end=7))
        task = asyncio.ensure_future(ctx.process(Stream(), handle, "decision"))
        while len(handled) < 7:
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(asyncio.wait_for(main(), 10))
    assert handled == [0, 1, 2, 3, 4, 5, 6]
    assert seeks == [(PARTITION, 2)]


def test_a_partition_is_fetched_again_when_the_broker_cannot_say_where_it_begins(
    tmp_path: Path,
) -> None:
    c = consumer(tmp_path)
    seeks = fake_broker(c, begins_at=ConnectionError("broker away"))
    asyncio.run(c.refetch(PARTITION, 338))
    assert seeks == [(PARTITION, 338)]
