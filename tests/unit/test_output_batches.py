"""Outputs go into one record batch per transaction and topic partition, in the order they
were emitted, and each batch reaches its transaction's producer at the commit."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatch

from streams.output_batches import OutputBatches, output_batches, send_batches

BATCH_SIZE = 1024


class Producer:
    """What the batches use of a transaction's aiokafka producer."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent: list[tuple[str, int, list[tuple[bytes | None, bytes | None]]]] = []

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(BATCH_SIZE, 0, is_transactional=True)  # uncompressed

    async def send_batch(self, batch: BatchBuilder, topic: str, *, partition: int) -> Any:
        # Closed, so that the producer sends it at once rather than let it linger.
        assert batch.append(timestamp=None, key=b"k", value=b"v") is None
        self.sent.append((topic, partition, records(batch)))
        return asyncio.get_running_loop().create_future()


def records(batch: BatchBuilder) -> list[tuple[bytes | None, bytes | None]]:
    built = DefaultRecordBatch(bytes(batch._build()))
    assert built.is_transactional
    return [(r.key, r.value) for r in built]


def test_outputs_of_one_transaction_and_partition_share_a_batch_in_emission_order() -> None:
    batches = OutputBatches()
    p0, p1 = Producer("t-0"), Producer("t-1")
    batches.add(p0, "t-0", "accepted", 1, b"k1", b"v1", [])
    batches.add(p1, "t-1", "accepted", 1, b"k2", b"v2", [])  # another input partition's
    batches.add(p0, "t-0", "status", 0, b"k1", b"s1", [])
    batches.add(p0, "t-0", "accepted", 1, b"k3", b"v3", [("h", b"x")])
    assert len(batches) == 3
    taken = [(p.name, topic, partition, records(b)) for p, topic, partition, b in batches.take()]
    assert taken == [
        ("t-0", "accepted", 1, [(b"k1", b"v1"), (b"k3", b"v3")]),
        ("t-1", "accepted", 1, [(b"k2", b"v2")]),
        ("t-0", "status", 0, [(b"k1", b"s1")]),
    ]
    assert len(batches) == 0 and batches.take() == []


def test_a_full_batch_is_followed_by_another_and_a_large_record_has_one_to_itself() -> None:
    batches = OutputBatches()
    producer = Producer("t-0")
    small = [(f"k{n}".encode(), bytes(100)) for n in range(20)]
    for key, value in small:
        batches.add(producer, "t-0", "accepted", 0, key, value, [])
    large = bytes(5 * BATCH_SIZE)
    batches.add(producer, "t-0", "accepted", 0, b"large", large, [])
    batches.add(producer, "t-0", "accepted", 0, b"after", b"v", [])
    taken = [records(b) for _, _, _, b in batches.take()]
    assert len(taken) >= 3
    assert [r for batch in taken for r in batch] == [*small, (b"large", large), (b"after", b"v")]
    assert [(b"large", large)] in taken


def test_the_commit_hands_each_batch_to_its_producer() -> None:
    app = type("App", (), {})()
    p0, p1 = Producer("t-0"), Producer("t-1")
    output_batches(app).add(p0, "t-0", "released", 0, b"m1", b"r1", [])
    output_batches(app).add(p1, "t-1", "released", 1, b"m2", b"r2", [])
    assert asyncio.run(send_batches(app)) == 2
    assert p0.sent == [("released", 0, [(b"m1", b"r1")])]
    assert p1.sent == [("released", 1, [(b"m2", b"r2")])]
    assert asyncio.run(send_batches(app)) == 0
    assert output_batches(app) is output_batches(app)
