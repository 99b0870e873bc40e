"""The Faust application of a stage, and what every stage shares: settings, reference data, the
schema catalogue, typed output topics and the dead-letter path.

Exactly-once: each stage runs with `processing_guarantee="exactly_once"`, so that its outputs, its
table changelogs and its input offsets commit in one Kafka transaction. Faust only routes a send
into a transaction when the destination topic is one the app consumes (its changelogs); a send to
any other topic would leave through the plain producer, outside the transaction, and be duplicated
after a crash. `SourcePartitionTransactions` routes such sends into the transaction of the input
partition being processed, which is the transaction that commits that input's offset.

Faust's own exactly-once falls short in two more ways that a crash test shows (lost and
duplicated outcomes): the periodic commit runs concurrently with processing, so one input's
outputs can straddle two transactions, and table changelog writes wait in a buffer that the
commit does not drain. So a stage processes each input and acknowledges it while holding the
app's processing lock, and the commit takes that lock, drains the changelog buffer into the open
transactions and commits the offsets acknowledged up to that point. Every transaction then holds
whole inputs: their outputs, their state changes and their offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import faust
from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.codec import SchemaCatalogue, catalogue
from streams.config import Settings
from streams.events import Output, dead_letter
from streams.reference import ReferenceData, load_reference
from streams.topics import DEAD_LETTER, STAGES, dead_letter_topic, group_id, topic_name

log = logging.getLogger(__name__)


def processing_lock(app: Any) -> asyncio.Lock:
    lock: asyncio.Lock | None = app.__dict__.get("_cci_processing_lock")
    if lock is None:
        lock = app.__dict__["_cci_processing_lock"] = asyncio.Lock()
    return lock


class SourcePartitionTransactions(TransactionManager):
    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> Awaitable[Any]:
        event = current_event()
        groups: dict[str, int] = cast(Any, self.app.assignor)._topic_groups
        if topic in groups or event is None:
            # Changelogs are co-partitioned with the input: Faust's own routing is right.
            return await super().send(topic, key, value, partition, timestamp, headers)
        source = event.message.tp
        tid = f"{self.app.conf.id}-{groups[source.topic]}-{source.partition}"
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers, transactional_id=tid
        )

    async def commit(self, offsets: Mapping[Any, int], start_new_transaction: bool = True) -> bool:
        lock = processing_lock(self.app)
        if not start_new_transaction:
            # The last commit before shutdown: no transaction follows it, so no input may be
            # processed after it. The lock stays taken until the worker is gone.
            await lock.acquire()
            return await self._commit_now(offsets, start_new_transaction)
        async with lock:
            return await self._commit_now(offsets, start_new_transaction)

    async def _commit_now(self, offsets: Mapping[Any, int], start_new_transaction: bool) -> bool:
        await _drain_changelog_buffer(self.app)
        consumer = cast(Any, self.consumer)
        # The offsets were chosen before the lock was ours: take the acks made since.
        assigned = consumer.assignment()
        fresh = consumer._filter_committable_offsets(set(offsets) | set(consumer._acked))
        current = {tp: offset for tp, offset in {**offsets, **fresh}.items() if tp in assigned}
        return bool(await super().commit(current, start_new_transaction))


def _in_flight(app: Any) -> list[int]:
    """Count the table writes that the buffer's background task has taken from its queue but
    not yet handed to a producer (installed before the first event is processed)."""
    buffer = cast(Any, app.producer).buffer
    in_flight: list[int] | None = buffer.__dict__.get("_cci_in_flight")
    if in_flight is None:
        counter = buffer.__dict__["_cci_in_flight"] = [0]
        send_pending = buffer._send_pending

        async def counted(fut: Any) -> None:
            counter[0] += 1
            try:
                await send_pending(fut)
            finally:
                counter[0] -= 1

        buffer._send_pending = counted
        in_flight = counter
    return in_flight


async def _drain_changelog_buffer(app: Any) -> None:
    """Hand every buffered table write to its transactional producer."""
    buffer = cast(Any, app.producer).buffer
    in_flight = _in_flight(app)
    while buffer.pending.qsize() or in_flight[0]:
        if buffer.pending.qsize():
            await buffer._send_pending(buffer.pending.get_nowait())
        else:
            await asyncio.sleep(0.001)


# The transport class names its transaction manager as a class attribute: the extension point.
aiokafka_driver.Transport.TransactionManager = SourcePartitionTransactions


@dataclass
class StageContext:
    """What a stage needs besides its own logic, built once per worker."""

    stage: str
    settings: Settings
    app: faust.App
    reference: ReferenceData
    catalogue: SchemaCatalogue
    topics: dict[str, Any]

    def source(self, logical: str) -> Any:
        return self.app.topic(
            topic_name(self.settings.namespace, logical),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=self.settings.partitions,
        )

    def table(self, name: str) -> Any:
        return self.app.Table(
            name,
            default=None,
            partitions=self.settings.partitions,
            schema=faust.Schema(
                key_type=str, value_type=None, key_serializer="json", value_serializer="json"
            ),
        )

    async def process(
        self, stream: Any, handle: Callable[[Any], Awaitable[None]], name: str
    ) -> None:
        """Run `handle` on each message of `stream`, whole inputs per transaction (see above).

        Whatever `handle` raises sends the message to the dead-letter topic: one bad message
        never stops a stage (spec §11)."""
        lock = processing_lock(self.app)
        _in_flight(self.app)
        async for event in stream.events():
            # Faust acknowledges an event when the loop asks for the next one, before it
            # waits for anything: the commit, which needs the lock, cannot slip in between
            # the end of this block and that acknowledgement.
            async with lock:
                message = event.message
                try:
                    await handle(message)
                except Exception as exc:
                    log.exception("%s failed on %s/%s", name, message.topic, message.offset)
                    await self.dead_letter(message, "processing-error", repr(exc))

    async def emit(self, outputs: Iterable[Output], headers: Any = None) -> None:
        """Encode everything first, then send: a failure leaves nothing half-sent."""
        encoded = [
            (self.topics[o.logical], o.key, self.catalogue.encode(o.logical, o.record))
            for o in outputs
        ]
        for topic, key, value in encoded:
            # The Kafka timestamp stays the time of production: event time lives in
            # `occurredAt`, and a broker applies retention to Kafka timestamps, so an old
            # event time would have the record deleted at once.
            await topic.send(key=key, value=value, headers=headers)

    async def dead_letter(self, message: Any, reason: str, error: str) -> None:
        headers = list(_headers(message.headers))
        log.warning(
            "dead letter %s/%s/%s: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            error,
        )
        out = dead_letter(
            self.stage,
            reason,
            error,
            message.topic,
            message.partition,
            message.offset,
            datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None,
            message.key,
            message.value,
            headers,
        )
        await self.emit([out], headers=[*headers, ("cci-dead-letter-reason", reason.encode())])


def _headers(headers: Any) -> Iterable[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(k), v if v is None else bytes(v)) for k, v in items]


def make_app(stage: str, settings: Settings, web_port: int | None = None) -> faust.App:
    return faust.App(
        group_id(settings.namespace, stage),
        broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
        store=settings.store,
        processing_guarantee="exactly_once",
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move after the session timeout: keep it short, the
        # broker is local or in the same data centre.
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        # Each commit closes the stage's transactions; outputs are visible to read_committed
        # readers only then, so this bounds the latency a stage adds.
        broker_commit_interval=settings.commit_interval,
        producer_linger=0.005,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=web_port or settings.web_port,
        datadir=str(settings.state_dir / settings.namespace / stage),
        autodiscover=False,
        # The logs carry each message's origin; personal data stays out of them.
        worker_redirect_stdouts=False,
    )


def make_context(stage: str, settings: Settings, app: faust.App) -> StageContext:
    spec = STAGES[stage]
    topics = {
        logical: app.topic(
            topic_name(settings.namespace, logical),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )
        for logical in spec.writes
    }
    topics[DEAD_LETTER] = app.topic(
        dead_letter_topic(settings.namespace, stage),
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
    )
    return StageContext(
        stage=stage,
        settings=settings,
        app=app,
        reference=load_reference(settings.reference_dir),
        catalogue=catalogue(settings.schemas_dir),
        topics=topics,
    )
