"""A stage's outputs appended to record batches as they are emitted, one batch per transaction
and topic partition, and handed to the transaction's producer when it commits.

Faust's send path, then aiokafka's, run once per record: the transaction's producer and its
lock, the metadata, the partitioner, a pending batch looked up and a future made for every
output, a tenth of either stage's time (docs/capacity.md, Eighth round). The stages'
producers linger until the commit anyway (docs/decisions.md, Exactly-once, 7): nothing of a
transaction is visible before it commits, and aiokafka sent its batches when the commit
began. Appended here, an output costs the record's encoding into the batch; the commit sends
each batch with the changelog records (`streams.table_writes`), before it ends the
transaction, whose end then waits for them as it waited for the lingering ones
(docs/decisions.md, Exactly-once, 16).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder


@dataclass
class _Open:
    """The batches of one transaction for one topic partition, the last one open."""

    producer: Any
    topic: str
    partition: int
    builders: list[BatchBuilder] = field(default_factory=list)


class OutputBatches:
    """The outputs emitted since the last commit, by transaction and topic partition."""

    def __init__(self) -> None:
        self._open: dict[tuple[str, str, int], _Open] = {}

    def __len__(self) -> int:
        return sum(len(b.builders) for b in self._open.values())

    def add(
        self,
        producer: Any,
        transactional_id: str,
        topic: str,
        partition: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes | None]],
    ) -> None:
        """Append a record to the open batch of its transaction and partition, or to a new
        one when that is full (a batch takes at least one record, whatever its size)."""
        at = (transactional_id, topic, partition)
        batches = self._open.get(at)
        if batches is None:
            batches = self._open[at] = _Open(producer, topic, partition)
        if (
            not batches.builders
            or batches.builders[-1].append(timestamp=None, key=key, value=value, headers=headers)
            is None
        ):
            builder = producer.create_batch()
            builder.append(timestamp=None, key=key, value=value, headers=headers)
            batches.builders.append(builder)

    def take(self) -> list[tuple[Any, str, int, BatchBuilder]]:
        """Every batch with its producer, topic and partition, in the order they were begun;
        none are left."""
        taken = [
            (b.producer, b.topic, b.partition, builder)
            for b in self._open.values()
            for builder in b.builders
        ]
        self._open.clear()
        return taken


def output_batches(app: Any) -> OutputBatches:
    """The worker's batches: one per app, shared by the stage that emits and the consumer that
    commits."""
    batches: OutputBatches | None = app.__dict__.get("_cci_output_batches")
    if batches is None:
        batches = app.__dict__["_cci_output_batches"] = OutputBatches()
    return batches


async def send_batches(app: Any) -> int:
    """Hand every batch to its transaction's producer; how many were handed over. A batch
    that fails to reach the broker fails its transaction's commit, as a record sent on its own
    did, and the worker restarts."""
    taken = output_batches(app).take()
    for producer, topic, partition, builder in taken:
        # Closed, a batch is sent at once instead of lingering: nothing more joins it, and
        # the commit that follows waits for it.
        builder.close()
        await producer.send_batch(builder, topic, partition=partition)
    return len(taken)
