"""The offset a fetch began at, asked of the real broker's transactional log: markers and aborted
records between inputs never look like missing inputs, and a fetch dropped on its way to the
stream always does (streams.fetch_continuity)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from streams.admin import delete_namespace, ensure_topics
from streams.codec import SchemaCatalogue
from streams.config import Settings
from streams.fetch_continuity import FetchedMessage, FetchStarts, install, skips_inputs
from streams.kafka_io import publish_records
from tests.integration.conftest import (
    WorkerProcess,
    collect,
    one_partition_topic,
    read_committed_consumer,
)
from tests.integration.test_intake import declarations


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


SHIM = Path(__file__).parent / "shims" / "drop_fetch"


def test_an_intake_worker_fetches_again_what_a_dropped_fetch_held(
    settings: Settings, schemas: SchemaCatalogue, tmp_path: Path
) -> None:
    # One partition, so that the inputs lodged after the dropped fetch follow it.
    single = settings.model_copy(update={"namespace": f"{settings.namespace}-one", "partitions": 1})
    ensure_topics(single)
    lodged = declarations(schemas, 30, 0.0, seed=18)
    first, dropped, after = lodged[:10], lodged[10:20], lodged[20:]
    worker = WorkerProcess(
        single,
        "intake",
        tmp_path,
        env={
            "PYTHONPATH": str(SHIM),
            "CCI_TEST_DROP_KEYS": ",".join(d["lrn"] for d in dropped),
        },
    )
    try:
        worker.start()
        publish_records(single, schemas, "declaration.lodged", first)
        collect(single, schemas, ["declaration.accepted"], until=10)
        publish_records(single, schemas, "declaration.lodged", dropped)
        deadline = time.monotonic() + 30
        while b"test fault: dropped a fetch" not in worker.log_path.read_bytes():
            assert time.monotonic() < deadline, worker.log()
            time.sleep(0.2)
        publish_records(single, schemas, "declaration.lodged", after)
        out = collect(single, schemas, ["declaration.accepted"], until=30)
    finally:
        worker.stop()
        delete_namespace(single)
    lrns = [r["lrn"] for r in out["declaration.accepted"]]
    assert sorted(lrns) == sorted(d["lrn"] for d in lodged)  # each once
    assert b"again from offset" in worker.log_path.read_bytes()
