"""Where each fetched input was fetched from, so that a stage never steps over an input it
was not handed.

aiokafka's position in a partition moves past the records a fetch hands over, and Faust
drops some of those records before they reach a stream: a fetch that returns after the flow
was stopped, records of a partition paused meanwhile, the rest of a fetch once the
generation changes. Faust repairs that with a seek to the committed offsets when it resumes
the streams, but records fetched between its resuming the partitions and that seek came from
the position past the dropped ones. Processed first, they made the stage's next offset jump
over the dropped inputs, and the inputs fetched again after the seek were then skipped as
duplicates: a declaration lost in the decision stage when a worker joined it under load
(docs/decisions.md, Exactly-once, 18).

An offset alone cannot tell a dropped input from a legitimate gap: transaction markers and
aborted records take offsets too. The fetch can. One drain of a partition covers the offsets
from where aiokafka's position was to where it leaves it, and hands over every input in that
range: what it skips is markers and aborted records. Drains that follow one another cover
the partition without a hole, unless a seek came between them. So each input carries the
offset just past the input handed over before it (`fetched_from`): the previous input of its
drain, the last input of the drain before when the two drains join up, or the drain's start
after a seek. The stage processes an input only once it has processed everything before that
offset, and otherwise fetches the partition again from its next offset
(`LockedCommitConsumer.refetch`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka.consumer.fetcher import FetchResult
from faust.types.tuples import ConsumerMessage


class DrainedRecords(list[Any]):
    """The records one drain hands over for one partition, with the position it began at and
    the one it left: every input between the two is among the records."""

    __slots__ = ("end", "start")

    def __init__(self, records: list[Any], start: int | None, end: int | None) -> None:
        super().__init__(records)
        self.start = start
        self.end = end


_original_getall = FetchResult.getall


def _getall_with_start(self: FetchResult, max_records: int | None = None) -> list[Any]:
    # aiokafka hands records over only while its position equals their next offset
    # (FetchResult.check_assignment), and moves the position to it after the drain, past any
    # markers and aborted records that follow the last one.
    pending = self._partition_records
    start = None if pending is None else pending.next_fetch_offset
    records: list[Any] = _original_getall(self, max_records)
    if not records or pending is None:
        return records
    return DrainedRecords(records, start, pending.next_fetch_offset)


def install() -> None:
    """Make every aiokafka fetch say where each partition's records began. Idempotent."""
    FetchResult.getall = _getall_with_start


class FetchedMessage(ConsumerMessage):
    """Faust's consumer message, with the offset the fetch had reached before this record:
    the previous record's offset plus one, or the fetch's start for the first."""

    __slots__ = ("fetched_from",)

    fetched_from: int | None


class FetchStarts:
    """Per partition, the offset just past the last input handed over, as the drains' records
    are made into messages in order."""

    def __init__(self) -> None:
        self._next: dict[Any, int | None] = {}
        self._end: dict[Any, int | None] = {}
        self._after_last: dict[Any, int | None] = {}

    def begin(self, records: Mapping[Any, Any]) -> None:
        """A new drain. Where it joins up with the partition's drain before, its first record
        follows that drain's last one, made into a message or not; otherwise its start."""
        for tp, batch in records.items():
            start = getattr(batch, "start", None)
            joined = start is not None and start == self._end.get(tp)
            self._next[tp] = self._after_last.get(tp) if joined else start
            self._end[tp] = getattr(batch, "end", None)
            self._after_last[tp] = batch[-1].offset + 1 if batch else None

    def message(self, tp: Any, record: Any, generation_id: int) -> FetchedMessage:
        timestamp = record.timestamp
        message = FetchedMessage(
            record.topic,
            record.partition,
            record.offset,
            None if timestamp is None else timestamp / 1000.0,  # type: ignore[arg-type]
            record.timestamp_type,
            record.headers,
            record.key,
            record.value,
            record.checksum,
            record.serialized_key_size,
            record.serialized_value_size,
            tp,
            generation_id=generation_id,
        )
        message.fetched_from = self._next.get(tp)
        self._next[tp] = record.offset + 1
        return message


def skips_inputs(message: Any, expected: int) -> bool:
    """True when processing `message` would step over inputs before it: its fetch began past
    `expected`, the next offset to process. Unknown (a message not fetched here): False."""
    fetched_from: int | None = getattr(message, "fetched_from", None)
    return fetched_from is not None and fetched_from > expected
