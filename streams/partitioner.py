"""The partitioner of every stage's producer: Kafka's default, murmur2 of the key, with the hash
of each recent key kept.

aiokafka computes murmur2 in pure Python for every record it sends. A stage sends several
records under one key for one input (the decision stage up to seven under the MRN, and their
changelog record at the commit), and the hash of a key never changes: computing it once per key
took it out of the loaded decision stage's profile, where it was about 2 % of the samples. The
partition chosen is the default partitioner's, which the other producers (`streams.kafka_io`,
librdkafka's `murmur2_random`) also use, so co-partitioning by key holds as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from aiokafka.partitioner import DefaultPartitioner, murmur2

_DEFAULT = DefaultPartitioner()


@lru_cache(maxsize=16384)
def key_hash(key: bytes) -> int:
    """The positive murmur2 hash of `key`, as Kafka's default partitioner takes it."""
    return int(murmur2(key)) & 0x7FFFFFFF


def partition_by_key(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """The partition of `key` among `all_partitions` (sorted by id); a record without a key
    goes where the default partitioner sends it, to a random available partition."""
    if key is None:
        return int(_DEFAULT(key, all_partitions, available))
    return all_partitions[key_hash(bytes(key)) % len(all_partitions)]
