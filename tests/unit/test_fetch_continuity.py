"""Each fetched input knows the offset its fetch had reached before it, and the stage's consumer
fetches a partition again rather than step over inputs that never reached the stream."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from faust.types import TP

from streams.app import LockedCommitConsumer, make_app
from streams.config import Settings
from streams.fetch_continuity import DrainedRecords, FetchedMessage, FetchStarts, skips_inputs

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


def consumer(tmp_path: Path) -> LockedCommitConsumer:
    settings = Settings(namespace="cont", store="memory://", state_dir=tmp_path, partitions=1)
    app = make_app("decision", settings)
    app.finalize()
    made = app.consumer
    assert isinstance(made, LockedCommitConsumer)
    return made


def test_the_consumer_makes_fetched_messages(tmp_path: Path) -> None:
    c = consumer(tmp_path)
    c._fetch_starts.begin({PARTITION: drained([5], start=4, end=6)})
    message = c._to_message(PARTITION, record(5))
    assert isinstance(message, FetchedMessage) and message.fetched_from == 4


def test_a_partition_is_fetched_again_once_per_missing_offset(tmp_path: Path) -> None:
    c = consumer(tmp_path)
    seeks: list[tuple[TP, int]] = []

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return {tp: 0 for tp in tps}

    async def seek(partition: TP, offset: int) -> None:
        seeks.append((partition, offset))

    c.earliest_offsets = earliest_offsets  # type: ignore[method-assign]
    c.seek = seek  # type: ignore[method-assign]

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
    seeks: list[int] = []

    async def earliest_offsets(*tps: TP) -> dict[TP, int]:
        return {tp: 500 for tp in tps}

    async def seek(partition: TP, offset: int) -> None:
        seeks.append(offset)

    c.earliest_offsets = earliest_offsets  # type: ignore[method-assign]
    c.seek = seek  # type: ignore[method-assign]
    asyncio.run(c.refetch(PARTITION, 338))
    assert seeks == []
    assert c.processed_until(PARTITION) == 500
