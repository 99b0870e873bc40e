"""Capture a time range of a namespace's topics to a file, and replay the file into another one.

What is decided, and why:

- The file is an Avro object container file (deflate) of `CapturedMessage` records: the logical
  event name (not the topic), partition, offset, Kafka timestamp (ms), key, headers and value,
  all as raw bytes. Values stay in their single-object encoding, so a capture holds exactly what
  the stages read, garbage included, and any Avro tool can open the file. The logical name lets
  a capture be replayed into any namespace.
- A time range is of Kafka timestamps, i.e. production time (docs/decisions.md, "Messages and
  keys"), never `occurredAt`. Per partition it is an offset range: from the first offset whose
  timestamp is at or after `--from` (`offsets_for_times`) to the first record whose timestamp is
  at or after `--to`, and never past the end offset read when the capture starts, so a capture
  of a namespace that is still being written to ends.
- Reading is read-committed with assigned partitions: no consumer group is joined or committed,
  nobody's offsets move.
- Replay produces each record to the same partition number of the target namespace's topic of
  the same logical name, in file order, which is offset order within a partition, with one
  idempotent producer (at most 5 requests in flight: librdkafka then keeps the order). Keys,
  headers, values and, unless `restamp`, the Kafka timestamps are kept. Replay preserves order
  within a partition, not the timing between topics: the stages' answers to a replayed input
  come later than the next replayed record, so inputs that depend on the stages' outputs (COP
  answers, ticks) are replayed in a later step (`topics`).
- Old timestamps and retention: a topic deletes a record whose timestamp is older than its
  `retention.ms`, on arrival as on any other day. Topics that replay creates are therefore
  created with `retention.ms=-1`; replaying into existing topics whose retention would delete
  part of the capture is refused (`retention_problems`) unless the records are restamped with
  the production time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # re-exported, not in __all__
    ConfigResource,
    ResourceType,
)
from fastavro import parse_schema
from fastavro import reader as avro_reader
from fastavro.write import Writer

from streams.config import Settings
from streams.topics import EVENTS, topic_name

FORMAT = "cci-capture/1"
META_FORMAT = "cci.format"
META_NAMESPACE = "cci.namespace"
META_FROM = "cci.from"
META_TO = "cci.to"
META_PARTITIONS = "cci.partitions"  # JSON {logical: partition count of the source topic}

SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "CapturedMessage",
    "namespace": "cci.capture",
    "doc": "One Kafka record of a CCI namespace, as `cci capture` read it",
    "fields": [
        {"name": "topic", "type": "string", "doc": "logical event name (spec §2)"},
        {"name": "partition", "type": "int"},
        {"name": "offset", "type": "long"},
        {"name": "timestamp", "type": "long", "doc": "Kafka timestamp, ms since the epoch"},
        {"name": "key", "type": ["null", "bytes"]},
        {
            "name": "headers",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Header",
                    "fields": [
                        {"name": "key", "type": "string"},
                        {"name": "value", "type": ["null", "bytes"]},
                    ],
                },
            },
        },
        {"name": "value", "type": ["null", "bytes"]},
    ],
}
_PARSED = parse_schema(SCHEMA)
_FIELDS = [f["name"] for f in SCHEMA["fields"]]
_STALL_SECONDS = 60.0
_RETENTION_MARGIN_MS = 3_600_000  # the replay itself, and the broker's next retention check

Record = dict[str, Any]


class CaptureError(Exception):
    """A capture or replay that cannot be done as asked: one line for the user."""


# -- arguments ------------------------------------------------------------------------------


def parse_instant(text: str, option: str) -> datetime:
    """An ISO-8601 instant with its UTC offset (`Z` or `+02:00`): a local time is ambiguous."""
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CaptureError(
            f"{option} {text!r}: not an ISO-8601 instant, e.g. 2026-04-01T08:00:00Z"
        ) from None
    if instant.tzinfo is None:
        raise CaptureError(f"{option} {text!r}: add a UTC offset, e.g. Z or +02:00")
    return instant.astimezone(UTC)


def millis(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)


def logical_names(text: str | None, option: str = "--topics") -> list[str]:
    """Logical names of a comma-separated list, in spec §2 order; all of them when `text` is
    None."""
    if text is None:
        return list(EVENTS)
    wanted = [name.strip() for name in text.split(",") if name.strip()]
    if not wanted:
        raise CaptureError(f"{option}: name at least one event")
    unknown = [name for name in wanted if name not in EVENTS]
    if unknown:
        raise CaptureError(
            f"{option}: unknown event {unknown[0]!r}; known: {', '.join(sorted(EVENTS))}"
        )
    return [name for name in EVENTS if name in wanted]


# -- the file -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaptureHeader:
    namespace: str
    start: str
    end: str
    partitions: dict[str, int]


def open_writer(handle: IO[bytes], header: CaptureHeader) -> Writer:
    return Writer(
        handle,
        _PARSED,
        codec="deflate",
        metadata={
            META_FORMAT: FORMAT,
            META_NAMESPACE: header.namespace,
            META_FROM: header.start,
            META_TO: header.end,
            META_PARTITIONS: json.dumps(header.partitions, sort_keys=True),
        },
    )


def captured(
    logical: str,
    partition: int,
    offset: int,
    timestamp: int,
    key: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    value: bytes | None,
) -> Record:
    return {
        "topic": logical,
        "partition": partition,
        "offset": offset,
        "timestamp": timestamp,
        "key": key,
        "headers": [{"key": k, "value": v} for k, v in headers],
        "value": value,
    }


def read_capture(handle: IO[bytes]) -> tuple[CaptureHeader, Iterator[Record]]:
    """The header and records of a capture file; `CaptureError` when it is not one."""
    try:
        records = avro_reader(handle)
    except Exception as exc:  # fastavro raises ValueError, EOFError, ... on foreign bytes
        raise CaptureError(f"not an Avro object container file ({exc})") from None
    meta = records.metadata
    schema = records.writer_schema
    names = [f.get("name") for f in schema.get("fields", [])] if isinstance(schema, dict) else []
    if meta.get(META_FORMAT) != FORMAT or names != _FIELDS:
        raise CaptureError(f"not a cci capture file (format {meta.get(META_FORMAT)!r})")
    try:
        partitions = {str(k): int(v) for k, v in json.loads(meta[META_PARTITIONS]).items()}
    except (KeyError, ValueError, AttributeError):
        raise CaptureError(f"{META_PARTITIONS}: not a map of partition counts") from None
    header = CaptureHeader(
        meta.get(META_NAMESPACE, ""), meta.get(META_FROM, ""), meta.get(META_TO, ""), partitions
    )
    return header, _records(records)


def _records(records: Iterable[Any]) -> Iterator[Record]:
    try:
        yield from records
    except Exception as exc:
        raise CaptureError(f"damaged capture file ({exc})") from None


@dataclass
class ReplayPlan:
    """What a capture file holds, read once before anything is produced."""

    header: CaptureHeader
    counts: dict[tuple[str, int], int] = field(default_factory=dict)
    oldest: int | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def needed_partitions(self, logical: str) -> int:
        """Partitions the target topic needs: one more than the highest captured number."""
        return 1 + max((p for (lg, p) in self.counts if lg == logical), default=-1)

    def logicals(self) -> list[str]:
        present = {lg for lg, _ in self.counts}
        return [lg for lg in EVENTS if lg in present]


def plan(handle: IO[bytes], wanted: Sequence[str] | None = None) -> ReplayPlan:
    header, records = read_capture(handle)
    result = ReplayPlan(header)
    for record in records:
        logical = record["topic"]
        if logical not in EVENTS:
            raise CaptureError(f"record at offset {record['offset']}: unknown event {logical!r}")
        if wanted is not None and logical not in wanted:
            continue
        where = (logical, int(record["partition"]))
        result.counts[where] = result.counts.get(where, 0) + 1
        if record["timestamp"] >= 0 and (
            result.oldest is None or record["timestamp"] < result.oldest
        ):
            result.oldest = int(record["timestamp"])
    return result


# -- capture --------------------------------------------------------------------------------


def capture(
    settings: Settings,
    logicals: Sequence[str],
    start_ms: int,
    end_ms: int,
    sink: Callable[[Record], None],
    on_total: Callable[[int], None] = lambda total: None,
    on_progress: Callable[[int], None] = lambda advanced: None,
) -> dict[str, int]:
    """Send the records of `logicals` with timestamps in [start_ms, end_ms) to `sink`, in
    offset order per partition; return how many per logical name. Raises `LookupError` for a
    missing topic."""
    from streams.kafka_io import _high_watermark, partitions_of, reader

    consumer = reader(settings)
    try:
        logical_of = {topic_name(settings.namespace, lg): lg for lg in logicals}
        wanted = [
            TopicPartition(topic, p, start_ms)
            for topic in logical_of
            for p in partitions_of(settings, consumer, topic)
        ]
        ends = {(tp.topic, tp.partition): _high_watermark(consumer, tp.topic, tp.partition)
                for tp in wanted}  # fmt: skip
        position: dict[tuple[str, int], int] = {}
        assignment = []
        for tp in consumer.offsets_for_times(wanted, timeout=30) if wanted else []:
            if tp.error is not None:
                raise KafkaException(tp.error)
            where = (tp.topic, tp.partition)
            if 0 <= tp.offset < ends[where]:
                position[where] = tp.offset
                assignment.append(TopicPartition(tp.topic, tp.partition, tp.offset))
        on_total(sum(ends[w] - position[w] for w in position))
        counts = dict.fromkeys(logicals, 0)
        pending = set(position)
        if assignment:
            consumer.assign(assignment)

        def advance(where: tuple[str, int], to: int) -> None:
            if to > position[where]:
                on_progress(to - position[where])
                position[where] = to

        def finish(where: tuple[str, int]) -> None:
            advance(where, ends[where])
            pending.discard(where)
            consumer.pause([TopicPartition(*where)])

        last = time.monotonic()
        while pending:
            message = consumer.poll(0.5)
            if message is None:
                if time.monotonic() - last > _STALL_SECONDS:
                    stuck = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                    raise CaptureError(
                        f"nothing readable for {_STALL_SECONDS:.0f}s below the end offsets of "
                        f"{stuck} (a transaction left open?)"
                    )
                continue
            last = time.monotonic()
            where = (str(message.topic()), int(message.partition() or 0))
            if where not in pending:
                continue
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    if int(message.offset() or 0) >= ends[where]:
                        finish(where)
                    continue
                raise KafkaException(error)
            offset = int(message.offset() or 0)
            timestamp = int(message.timestamp()[1])
            if offset >= ends[where] or timestamp >= end_ms:
                finish(where)
                continue
            sink(
                captured(
                    logical_of[where[0]],
                    where[1],
                    offset,
                    timestamp,
                    message.key(),
                    _headers(message.headers()),
                    message.value(),
                )
            )
            counts[logical_of[where[0]]] += 1
            advance(where, offset + 1)
            if offset + 1 >= ends[where]:
                finish(where)
        return counts
    finally:
        consumer.close()


def _headers(headers: Any) -> list[tuple[str, bytes | None]]:
    items = headers.items() if isinstance(headers, dict) else headers or []
    return [(str(k), v.encode() if isinstance(v, str) else v) for k, v in items]


def source_partitions(settings: Settings, logicals: Sequence[str]) -> dict[str, int]:
    """Partition count of each logical name's topic; `LookupError` when one is missing."""
    from streams.kafka_io import partitions_of, reader

    consumer = reader(settings)
    try:
        return {
            lg: len(partitions_of(settings, consumer, topic_name(settings.namespace, lg)))
            for lg in logicals
        }
    finally:
        consumer.close()


# -- replay ---------------------------------------------------------------------------------


def prepare_target(settings: Settings, replay: ReplayPlan, restamp: bool) -> list[str]:
    """Create the target namespace's missing topics (retention.ms=-1) and check that every
    replayed topic has the partitions and, unless `restamp`, the retention the capture needs.
    Returns the topics created."""
    from streams.admin import ensure_topics, wait_for_broker

    logicals = replay.logicals()
    needed = max(
        [replay.needed_partitions(lg) for lg in logicals]
        + [replay.header.partitions.get(lg, 0) for lg in logicals]
        + [1]
    )
    target = Settings(**{**settings.model_dump(), "partitions": needed})
    created = ensure_topics(target, config={"retention.ms": "-1"})
    admin = wait_for_broker(settings)
    metadata = admin.list_topics(timeout=10).topics
    for logical in logicals:
        topic = topic_name(settings.namespace, logical)
        have = len(metadata[topic].partitions)
        if have < replay.needed_partitions(logical):
            raise CaptureError(
                f"{topic} has {have} partitions, the capture has records on partition "
                f"{replay.needed_partitions(logical) - 1} of {logical}: replay into a new "
                "namespace or one with as many partitions as the source"
            )
    if not restamp and replay.oldest is not None:
        problems = retention_problems(
            retentions(settings, [topic_name(settings.namespace, lg) for lg in logicals]),
            replay.oldest,
            int(time.time() * 1000),
        )
        if problems:
            raise CaptureError(
                f"{problems[0]}: the broker would delete replayed records on arrival; add "
                "--restamp, or replay into a namespace whose topics the replay creates"
            )
    return created


def retentions(settings: Settings, topics: Sequence[str]) -> dict[str, int]:
    """The effective `retention.ms` of each topic (-1: kept for ever)."""
    from streams.admin import admin_client

    admin = admin_client(settings)
    resources = [ConfigResource(ResourceType.TOPIC, t) for t in topics]
    result: dict[str, int] = {}
    for resource, future in admin.describe_configs(resources).items():
        entry = future.result(timeout=30).get("retention.ms")
        result[resource.name] = -1 if entry is None or entry.value is None else int(entry.value)
    return result


def retention_problems(retention: Mapping[str, int], oldest_ms: int, now_ms: int) -> list[str]:
    """Topics whose time retention would delete a record stamped `oldest_ms` at `now_ms`."""
    return [
        f"{topic} keeps records for retention.ms={ms}, the capture's oldest is "
        f"{datetime.fromtimestamp(oldest_ms / 1000, UTC).isoformat(timespec='seconds')}"
        for topic, ms in sorted(retention.items())
        if ms >= 0 and oldest_ms < now_ms - ms + _RETENTION_MARGIN_MS
    ]


def replay(
    settings: Settings,
    records: Iterable[Record],
    restamp: bool = False,
    wanted: Sequence[str] | None = None,
    on_sent: Callable[[int], None] = lambda n: None,
) -> dict[str, int]:
    """Produce captured records into `settings`' namespace, same logical name and partition,
    in the given order; return how many per logical name."""
    from streams.kafka_io import produce, producer

    client = producer(settings, **{"max.in.flight.requests.per.connection": 5})
    failures: list[str] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None and not failures:
            failures.append(f"{message.topic()}[{message.partition()}]: {error.str()}")

    counts: dict[str, int] = {}
    for record in records:
        logical = record["topic"]
        if wanted is not None and logical not in wanted:
            continue
        kwargs: dict[str, Any] = {
            "partition": int(record["partition"]),
            "key": record["key"],
            "value": record["value"],
            "headers": [(h["key"], h["value"]) for h in record["headers"]],
            "on_delivery": delivered,
        }
        if not restamp and record["timestamp"] > 0:
            kwargs["timestamp"] = int(record["timestamp"])
        produce(client, topic_name(settings.namespace, logical), **kwargs)
        counts[logical] = counts.get(logical, 0) + 1
        on_sent(1)
        if failures:
            break
    left = client.flush(120)
    if failures:
        raise CaptureError(f"replay stopped: {failures[0]}")
    if left:
        raise CaptureError(f"replay incomplete: {left} records not delivered within 120s")
    return counts


def open_output(path: Path) -> IO[bytes]:
    try:
        return path.open("wb")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot be written ({exc.strerror or exc})") from None


def open_input(path: Path) -> IO[bytes]:
    try:
        return path.open("rb")
    except OSError as exc:
        raise CaptureError(f"{path}: cannot be read ({exc.strerror or exc})") from None
