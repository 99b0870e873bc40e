"""The stages' partitioner: Kafka's default choice for every key, each key hashed once."""

from __future__ import annotations

from typing import Any, cast

from aiokafka.partitioner import DefaultPartitioner

from streams.app import make_app
from streams.config import Settings
from streams.partitioner import key_hash, partition_by_key


def test_every_key_goes_where_the_default_partitioner_sends_it() -> None:
    # Co-partitioning by key rests on it: the decision stage's inputs from other producers
    # (the intake, the COP, the officers' tools) meet its own outputs' partitions.
    default = DefaultPartitioner()
    keys = [f"26FR{n:014d}".encode() for n in range(2000)] + [b"", b"FR1234/LRN-\xc3\xa9"]
    for count in (1, 2, 3, 6, 12):
        partitions = list(range(count))
        for key in keys:
            assert partition_by_key(key, partitions, partitions) == default(
                key, partitions, partitions
            )


def test_a_key_is_hashed_once_and_a_keyless_record_goes_to_an_available_partition() -> None:
    key_hash.cache_clear()
    for _ in range(7):  # an input's outputs under one MRN
        partition_by_key(b"26FR00000000000001", [0, 1], [0, 1])
    assert key_hash.cache_info().misses == 1 and key_hash.cache_info().hits == 6
    assert {partition_by_key(None, [0, 1, 2], [2]) for _ in range(20)} == {2}


def test_every_stage_producer_partitions_with_it() -> None:
    app = make_app("decision", Settings(namespace="ns", store="memory://"))
    # Faust's type for the setting leaves out the key: the value is what counts.
    assert cast(Any, app.conf).producer_partitioner is partition_by_key
