"""confluent-kafka producers and readers for the tooling (CLI, demo, tests).

Producers hash keys with murmur2 like the Java client and aiokafka (librdkafka's default is
CRC32): a key must land on the same partition whoever produces it, because stage state is
partitioned by key.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from streams.codec import SchemaCatalogue
from streams.config import Settings
from streams.topics import event_key, topic_name


def producer(settings: Settings, **extra: Any) -> Producer:
    return Producer(
        {
            **settings.kafka_client(),
            "partitioner": "murmur2_random",
            "enable.idempotence": True,
            "linger.ms": 5,
            **extra,
        }
    )


# The throw-away group ids of `reader`; on a secured cluster, the tools' ACLs allow this prefix.
TOOL_GROUP_PREFIX = "cci-tool-"


def reader(settings: Settings) -> Consumer:
    """A consumer that never joins or commits a group: tools must not move anyone's offsets."""
    return Consumer(
        {
            **settings.kafka_client(),
            "group.id": f"{TOOL_GROUP_PREFIX}{uuid.uuid4()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )


def complete(logical: str, record: Mapping[str, Any]) -> dict[str, Any]:
    """Fill `eventId` and `occurredAt` when a hand-written record leaves them out (spec §12)."""
    filled = dict(record)
    filled.setdefault("eventId", str(uuid.uuid4()))
    filled.setdefault("occurredAt", datetime.now(UTC).isoformat(timespec="milliseconds"))
    return filled


def partitions_of(settings: Settings, client: Producer | Consumer, topic: str) -> list[int]:
    metadata = client.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise LookupError(f"topic {topic} does not exist; run `cci topics create`")
    return sorted(metadata.partitions)


def publish_records(
    settings: Settings,
    catalogue: SchemaCatalogue,
    logical: str,
    records: Iterable[Mapping[str, Any]],
    client: Producer | None = None,
    on_sent: Any = None,
) -> int:
    """Encode and produce Avro-native records; `clock.tick` goes to every partition (spec §8)."""
    client = client or producer(settings)
    topic = topic_name(settings.namespace, logical)
    targets: list[int | None] = (
        list(partitions_of(settings, client, topic)) if logical == "clock.tick" else [None]
    )
    sent = 0
    for record in records:
        value = catalogue.encode(logical, record)
        key = event_key(logical, record)
        for partition in targets:
            _produce(client, topic, key, value, partition)
        sent += 1
        if on_sent is not None:
            on_sent(1)
    client.flush(60)
    return sent


def _produce(
    client: Producer,
    topic: str,
    key: bytes | None,
    value: bytes,
    partition: int | None,
) -> None:
    # No explicit timestamp: the broker's retention reads it, and an event time months old
    # (a replayed campaign, a generated load) would be deleted on arrival.
    kwargs: dict[str, Any] = {"key": key, "value": value}
    if partition is not None:
        kwargs["partition"] = partition
    produce(client, topic, **kwargs)


def produce(client: Producer, topic: str, **kwargs: Any) -> None:
    """`client.produce`, waiting while the client's local queue is full."""
    while True:
        try:
            client.produce(topic, **kwargs)
            client.poll(0)
            return
        except BufferError:
            client.poll(0.1)  # local queue full: let deliveries drain, then retry


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def _header_list(headers: Any) -> list[tuple[str, bytes | None]]:
    items = headers.items() if isinstance(headers, dict) else headers or []
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items]


def _high_watermark(consumer: Consumer, topic: str, partition: int, tries: int = 40) -> int:
    # A topic created a moment ago may not have its partition leaders elected yet.
    for attempt in range(tries):
        try:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition), 10)[1])
        except KafkaException:
            if attempt == tries - 1:
                raise
            time.sleep(0.25)
    raise AssertionError("unreachable")


def end_offsets(settings: Settings, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    consumer = reader(settings)
    try:
        result: dict[tuple[str, int], int] = {}
        for topic in topics:
            for partition in partitions_of(settings, consumer, topic):
                result[(topic, partition)] = _high_watermark(consumer, topic, partition)
        return result
    finally:
        consumer.close()


def read(
    settings: Settings,
    topics: Iterable[str],
    start: Mapping[tuple[str, int], int] | None = None,
    follow: bool = False,
    idle_timeout: float = 5.0,
    deadline: float | None = None,
    stop: threading.Event | None = None,
) -> Iterator[Received]:
    """Read topics from `start` offsets (default: the beginning) to their end, or forever.

    Without `follow`, stops once every partition has reached its end, or when nothing arrived
    for `idle_timeout` seconds. In any case stops at `deadline` (a `time.monotonic()` value), or
    once `stop` is set.
    """
    consumer = reader(settings)
    try:
        assignment = [
            TopicPartition(t, p, (start or {}).get((t, p), OFFSET_BEGINNING))
            for t in topics
            for p in partitions_of(settings, consumer, t)
        ]
        consumer.assign(assignment)
        pending = {(tp.topic, tp.partition) for tp in assignment}
        last = time.monotonic()
        while (deadline is None or time.monotonic() < deadline) and not (stop and stop.is_set()):
            if not follow and (not pending or time.monotonic() - last >= idle_timeout):
                return
            message = consumer.poll(0.5)
            if message is None:
                continue
            last = time.monotonic()
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    pending.discard((message.topic(), message.partition()))
                    continue
                raise RuntimeError(f"reading {message.topic()}: {error.str()}")
            yield Received(
                topic=str(message.topic()),
                partition=int(message.partition() or 0),
                offset=int(message.offset() or 0),
                timestamp=message.timestamp()[1],
                key=message.key(),
                value=message.value(),
                headers=_header_list(message.headers()),
            )
    finally:
        consumer.close()
