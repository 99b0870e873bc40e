"""The offset a fetch began at, asked of the real broker's transactional log: markers and aborted
records between inputs never look like missing inputs, and a fetch dropped on its way to the
stream always does (streams.fetch_continuity)."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.config import Settings
from streams.fetch_continuity import FetchedMessage, FetchStarts, install, skips_inputs
from tests.integration.conftest import one_partition_topic, read_committed_consumer


async def _write(settings: Settings, topic: str) -> None:
    writer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, transactional_id=f"{topic}-writer"
    )
    await writer.start()
    try:
        # Data at 0-2, 7-9 and 11; markers at 3, 6, 10 and 12; an aborted pair at 4-5.
        transactions: list[tuple[list[bytes], bool]] = [
            ([b"a", b"b", b"c"], True),
            ([b"x", b"y"], False),
            ([b"d", b"e", b"f"], True),
            ([b"g"], True),
        ]
        for values, commit in transactions:
            await writer.begin_transaction()
            for value in values:
                await writer.send_and_wait(topic, value)
            await (writer.commit_transaction() if commit else writer.abort_transaction())
    finally:
        await writer.stop()


async def _fetch(
    consumer: AIOKafkaConsumer, tp: TopicPartition, starts: FetchStarts
) -> list[FetchedMessage]:
    batch = await consumer.getmany(tp, timeout_ms=5_000, max_records=2)
    starts.begin(batch)
    return [starts.message(tp, record, generation_id=1) for record in batch.get(tp, [])]


def test_fetch_starts_tell_dropped_inputs_from_markers(settings: Settings) -> None:
    install()
    topic = one_partition_topic(settings, "continuity")
    tp = TopicPartition(topic, 0)

    async def main() -> dict[str, list[int] | bool]:
        await _write(settings, topic)
        async with read_committed_consumer(settings) as consumer:
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            starts = FetchStarts()
            # Every input in order, two per fetch: none is held back.
            processed: list[int] = []
            held_back = False
            expected = 0
            while len(processed) < 7:
                for message in await _fetch(consumer, tp, starts):
                    held_back |= skips_inputs(message, expected)
                    processed.append(message.offset)
                    expected = message.offset + 1

            # Again from the start, the second fetch lost on its way to the stream.
            consumer.seek(tp, 0)
            kept = await _fetch(consumer, tp, starts)
            dropped = await _fetch(consumer, tp, starts)
            after = await _fetch(consumer, tp, starts)
            expected = kept[-1].offset + 1
            caught = skips_inputs(after[0], expected)
            # Fetched again from the next offset to process, the inputs come in order.
            consumer.seek(tp, expected)
            again = await _fetch(consumer, tp, starts)
            return {
                "processed": processed,
                "held_back": held_back,
                "dropped": [m.offset for m in dropped],
                "caught": caught,
                "again": [m.offset for m in again],
                "again_held_back": skips_inputs(again[0], expected),
            }

    seen = asyncio.run(main())
    assert seen["processed"] == [0, 1, 2, 7, 8, 9, 11]
    assert seen["held_back"] is False
    assert seen["dropped"] == [2, 7]
    assert seen["caught"] is True
    assert seen["again"] == [2, 7]
    assert seen["again_held_back"] is False
