"""The Faust application of a stage, and what every stage shares: settings, reference data, the
schema catalogue, typed output topics and the dead-letter path.

Exactly-once: each stage runs with `processing_guarantee="exactly_once"`, so that its outputs, its
table changelogs and its input offsets commit in one Kafka transaction. Faust only routes a send
into a transaction when the destination topic is one the app consumes (its changelogs); a send to
any other topic would leave through the plain producer, outside the transaction, and be duplicated
after a crash. `SourcePartitionTransactions` routes such sends into the transaction of the input
partition being processed, which is the transaction that commits that input's offset.

Faust's own exactly-once falls short in two more ways that a restart test shows (lost and
hidden outcomes): the periodic commit runs concurrently with processing, so one input's outputs
can straddle two transactions; and `table[key] = value` hands the changelog write to a background
buffer that may deliver it after the commit, or after the last transaction has ended. So a stage
processes each input and acknowledges it while holding the app's processing lock, which the
whole commit (choosing the offsets included) also takes, and writes its tables with
`StageContext.put`, whose changelog records the commit sends itself, under that lock, before it
commits (`streams.table_writes`). Every transaction then holds whole inputs: their outputs, their
state changes and their offsets.

Faust's offset bookkeeping loses inputs around a restart (see `LockedCommitConsumer` and
`_keep_input_buffers`): the stage keeps its own, committing the offset after the last input it
processed, in offset order. docs/decisions.md (Exactly-once) tells the whole story.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property, partial
from typing import Any, cast

import faust
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.exceptions import ProducerSendError
from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.transport.drivers import aiokafka as aiokafka_driver
from faust.types import TP
from mode.services import WaitResults
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streams.broker_health import BrokerProbe
from streams.codec import DecodeError, Embedded, SchemaCatalogue, catalogue, check_event_id
from streams.config import Settings
from streams.eager import start_eagerly
from streams.events import Output, dead_letter, fit_original
from streams.faust_settings import client_settings
from streams.fetch_continuity import FetchedMessage, FetchStarts, skips_inputs
from streams.fetch_continuity import install as install_fetch_starts
from streams.metrics import PartitionLag, StageMetrics
from streams.output_batches import OutputBatches, output_batches, send_batches
from streams.partitioner import partition_by_key
from streams.reference import ReferenceData, load_reference
from streams.table_writes import (
    TableWrite,
    pending_changelog,
    send_pending,
    store,
    table_write,
)
from streams.topics import DEAD_LETTER, dead_letter_topic, group_id, topic_name, topology

log = logging.getLogger(__name__)


def failure(exc: BaseException) -> str:
    """An exception for the log: its class and where it was raised, without its message,
    which may quote the record being processed (a trader's name, say). The message stays in
    the dead-letter record, on a topic only the stage and its operators may read."""
    frames = "".join(traceback.format_tb(exc.__traceback__)).rstrip()
    return f"{type(exc).__name__}\n{frames}" if frames else type(exc).__name__


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
        event = self._input_event(topic)
        if event is None:
            return await super().send(topic, key, value, partition, timestamp, headers)
        return await self.producer.send(
            topic, key, value, partition, timestamp, headers, transactional_id=self._tid(event)
        )

    def _input_event(self, topic: str) -> Any:
        """The input being processed, when a send to `topic` goes into its transaction; None
        when Faust's own routing is right: a changelog, co-partitioned with the input, or a
        send outside any input."""
        event = current_event()
        groups: dict[str, int] = cast(Any, self.app.assignor)._topic_groups
        return None if topic in groups else event

    def _tid(self, event: Any) -> str:
        """The transactional id of the input partition of `event`, as Faust names it."""
        source = event.message.tp
        tids: dict[TP, str] = self.__dict__.setdefault("_cci_tids", {})
        tid = tids.get(source)
        if tid is None:
            groups: dict[str, int] = cast(Any, self.app.assignor)._topic_groups
            tid = tids[source] = f"{self.app.conf.id}-{groups[source.topic]}-{source.partition}"
        return tid

    async def append(
        self,
        batches: OutputBatches,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
    ) -> None:
        """Put an output in the batch of the transaction of the input being processed, to be
        sent when it commits (`streams.output_batches`); partitioned as the producer's own send
        partitions it."""
        event = self._input_event(topic)
        if event is None:
            await super().send(topic, key, value, None, None, headers)
            return
        tid = self._tid(event)
        producer = cast(Any, self.producer)._transaction_producers.get(tid)
        if producer is None:
            raise ProducerSendError(f"no transaction producer for {tid}")
        partitions = producer.client.cluster.partitions_for_topic(topic)
        if partitions and key is not None:
            # What the producer's own send asks its partitioner, without its metadata wait and
            # its set of available partitions, which only a record without a key uses.
            partition = partition_by_key(key, sorted(partitions), ())
        else:
            await producer.client._wait_on_metadata(topic)
            partition = producer._partition(topic, None, None, None, key, value)
        batches.add(producer, tid, topic, partition, key, value, list(headers or []))

    async def on_rebalance(
        self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]
    ) -> None:
        """Drop the producer of every transactional id the new assignment does not give this
        worker, before Faust begins the transactions of the ones it does.

        Faust drops only those of the `revoked` partitions its assignor still counts active,
        which at a join leaves some in place: the worker that joined fences them with its own,
        and when their partitions came back (the joiner died) the stale producer was used
        again, each send failing as fenced, the stage stalled on those partitions. Dropped, a
        producer is made anew when its partitions come back, and fences whatever the previous
        owner left open."""
        owned = self._tps_to_transactional_ids(assigned)
        prefix = f"{self.app.conf.id}-"
        held: dict[str, Any] = cast(Any, self.producer)._transaction_producers
        for tid in sorted(t for t in held if t.startswith(prefix) and t not in owned):
            await self.producer.stop_transaction(tid)
        await super().on_rebalance(assigned, revoked, newly_assigned)


class ConcurrentCommitProducer(aiokafka_driver.Producer):
    """Faust's producer, committing the transactions of a commit at once instead of one after
    the other.

    A commit ends one transaction per input partition, each with its own producer: offsets
    to the transaction, then the end of the transaction, each a round trip to the broker.
    One after the other, a stage holding two partitions waited for twice the round trips with
    its inputs held back (docs/decisions.md, Exactly-once, 15). The transactions are
    independent of one another, as they are when each is ended in turn: a fenced producer
    fails the commit, and the worker restarts, either way."""

    async def commit_transactions(
        self,
        tid_to_offset_map: Mapping[str, Mapping[TP, int]],
        group_id: str,
        start_new_transaction: bool = True,
    ) -> None:
        await asyncio.gather(
            *(
                self._commit_one(tid, offsets, group_id, start_new_transaction)
                for tid, offsets in tid_to_offset_map.items()
            )
        )

    async def _commit_one(
        self,
        transactional_id: str,
        offsets: Mapping[TP, int],
        group_id: str,
        start_new_transaction: bool,
    ) -> None:
        async with self._trn_locks[transactional_id]:
            producer = self._transaction_producers.get(transactional_id)
            if producer is None:
                log.warning("commit of an unknown transaction %s", transactional_id)
                return
            await producer.send_offsets_to_transaction(offsets, group_id)
            await producer.commit_transaction()
            if start_new_transaction:
                await producer.begin_transaction()


class _InputReadOffsets(defaultdict[TP, int | None]):
    """Faust's read offsets, as its fetch loop sees them: none for the stages' inputs.

    The fetch loop drops any input below the read offset, taking it for one it already
    delivered; but an input it delivered before the seek to the committed offsets may have
    been cleared from the stream's buffer since, and then it is lost. The stage skips what it
    has already processed itself (`StageContext.process`), so every input can be delivered.
    Changelogs keep Faust's rule: table recovery is Faust's own."""

    def __getitem__(self, tp: TP) -> int | None:
        offset = super().__getitem__(tp)
        return offset if tp.topic.endswith("-changelog") else None


def fetch_wait(app: Any) -> tuple[int, int] | None:
    """The bytes a stage's fetch waits for and the most milliseconds the broker holds it
    (`Settings.fetch_min_bytes`, `fetch_max_wait`), as `make_app` set them on the app."""
    found: tuple[int, int] | None = app.__dict__.get("_cci_fetch_wait")
    return found


class BrokerStableOffsets(aiokafka_driver.AIOKafkaConsumerThread):
    """Asks the broker how far each changelog goes before Faust recovers a table from it.

    In a transactional app Faust takes that from `last_stable_offset`, a value aiokafka learns
    only from a fetch of the partition: before the first one it is None, which Faust's recovery
    reads as an empty changelog. A decision worker restarted after SIGKILL recovered nothing so,
    and sent its declarations' COP answers to the dead letters as unknown MRNs. The consumer
    reads committed, so the end offsets the broker gives are the last stable offsets: up to the
    first transaction still open, whose writes may yet be aborted."""

    async def _highwaters(self, partitions: list[TP]) -> Any:
        return await self._ensure_consumer().end_offsets(partitions)

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        fetch = fetch_wait(self.app)
        if fetch is not None:
            # Faust passes aiokafka no fetch minimum (1 byte) and a fixed wait: set on the
            # consumer before it starts, which is when it builds its fetcher from them.
            consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = fetch
        return consumer


class LockedCommitConsumer(aiokafka_driver.Consumer):
    """Commits under the processing lock, from choosing the offsets to closing the
    transactions, so that no input is half in one transaction and half in the next; and
    commits, for each partition, the offset after the last input the stage processed.

    Faust derives the offsets from its acknowledgements instead, with two faults that a
    restart shows: it lets a commit step over the one offset just past the last commit even
    when that input was never acknowledged (it takes it for a transaction marker), and inputs
    delivered before its seek to the committed offsets are delivered again after it, so that
    its bookkeeping and the stream disagree and a partition can stop committing for good.
    Processing in offset order and committing what was processed has neither fault."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._read_offset = _InputReadOffsets(lambda: None)
        self._fetch_starts = FetchStarts()

    def _new_consumer_thread(self) -> aiokafka_driver.AIOKafkaConsumerThread:
        return BrokerStableOffsets(self, loop=self.loop, beacon=self.beacon)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """The consumer's only race: Faust's fetcher delivers each message to the streams as
        `wait_first(delivery, suspend_flow.wait())`. The delivery runs eagerly
        (`streams.eager`) and races the suspension only if it has to wait."""
        if timeout is None and len(coros) == 2 and asyncio.iscoroutine(coros[0]):
            rest = start_eagerly(coros[0])
            if rest is None:
                if asyncio.iscoroutine(coros[1]):
                    coros[1].close()  # the wait for a suspension, never started
                return WaitResults([coros[0]], [None], False)
            coros = (rest, coros[1])
        return await super().wait_first(*coros, timeout=timeout)

    async def _wait_next_records(self, timeout: float) -> Any:
        records, active_partitions = await super()._wait_next_records(timeout)
        if records:
            self._fetch_starts.begin(records)
        return records, active_partitions

    def _to_message(self, tp: TP, record: Any) -> FetchedMessage:
        return self._fetch_starts.message(tp, record, self.app.consumer_generation_id)

    async def refetch(self, tp: TP, expected: int) -> None:
        """Fetch `tp` again from `expected`, the next offset to process, because an input
        fetched past it would step over inputs Faust dropped (`streams.fetch_continuity`).
        Asked once per offset: the inputs fetched before the seek keep coming until the
        refetched ones do, and are skipped meanwhile."""
        asked: dict[TP, int] = self.__dict__.setdefault("_cci_refetch", {})
        if asked.get(tp) == expected:
            return
        asked[tp] = expected
        try:
            earliest = (await asyncio.wait_for(self.earliest_offsets(tp), _ASK_BROKER)).get(tp)
        except Exception as exc:  # the broker away: the seek is the consumer's own, no request
            log.warning("could not ask where %s begins: %s", tp, failure(exc))
            earliest = None
        if earliest is not None and earliest > expected:
            # Deleted by retention before this stage processed them: nothing left to fetch.
            log.error("inputs %s %d..%d are no longer on the broker", tp, expected, earliest - 1)
            self.mark_processed(tp, earliest - 1)
            return
        log.warning("fetching %s/%d again from offset %d", tp.topic, tp.partition, expected)
        try:
            await self.seek(tp, expected)
        except Exception as exc:  # revoked meanwhile: its next owner starts from the commit
            log.warning("could not fetch %s again: %s", tp, failure(exc))

    def processed_until(self, tp: TP) -> int | None:
        """The offset of the next input of `tp` to process, once the worker has been seeked
        to its committed offsets; None when nothing is committed yet (read from the start)."""
        done = self.__dict__.setdefault("_cci_next", {}).get(tp)
        return done if done is not None else self._committed_offset.get(tp)

    def mark_processed(self, tp: TP, offset: int, timestamp: float | None = None) -> None:
        self.__dict__.setdefault("_cci_next", {})[tp] = offset + 1
        if timestamp is not None:
            self.__dict__.setdefault("_cci_last_timestamp", {})[tp] = timestamp

    def lag(self) -> list[PartitionLag]:
        """Inputs not yet processed per assigned input partition, and how old the position is."""
        now = time.time()
        stamps = self.__dict__.get("_cci_last_timestamp", {})
        lags = []
        for tp in sorted(self.assignment()):
            if tp.topic.endswith("-changelog"):
                continue
            try:
                end = self.highwater(tp)
            except Exception:  # not fetched yet: nothing known
                continue
            done = self.processed_until(tp) or 0
            behind = max(0, (end or 0) - done)
            age = max(0.0, now - stamps[tp]) if behind and tp in stamps else 0.0
            lags.append(PartitionLag(tp.topic, tp.partition, behind, age))
        return lags

    def _processed_since_commit(self, chosen: Callable[[TP], bool]) -> dict[TP, int]:
        """For each `chosen` partition processed past its last commit, the offset to commit."""
        return {
            tp: offset
            for tp, offset in self.__dict__.setdefault("_cci_next", {}).items()
            if chosen(tp) and self._should_commit(tp, offset)
        }

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        async with processing_lock(self.app):
            if not cast(Any, self.app.tables).recovery.completed.is_set():
                # Before Faust's seek to the committed offsets nothing has been processed.
                return False
            await flush_transactions(self.app)
            assignment = self.assignment()
            offsets = self._processed_since_commit(
                lambda tp: (
                    tp in assignment and (topics is None or tp in topics or tp.topic in topics)
                )
            )
            done = False
            if offsets:
                done = bool(
                    await self._commit_offsets(offsets, start_new_transaction=start_new_transaction)
                )
                self._forget_acks(offsets)
            if not start_new_transaction:
                # Faust ends the transactions when it stops and when it waits for its streams
                # at a rebalance; the ones it begins next are new: no input until the seek.
                self.inputs_open().clear()
            return done

    def commit_soon(self, after: float) -> None:
        """Commit `after` seconds from now, unless such a commit is pending already.

        A stage calls this when it has read everything it was sent: its outputs are visible
        downstream only once their transaction commits, and a declaration crosses four commits
        before its release, so waiting for the commit interval at each made most of its latency
        at low load. Under load the input does not run dry and the commits stay at the
        interval, where large transactions keep each input cheap (docs/decisions.md,
        Exactly-once, 8)."""
        pending: asyncio.Future[Any] | None = self.__dict__.get("_cci_commit_soon")
        if pending is not None and not pending.done():
            return
        # A future of the consumer's service: a failed commit crashes the worker as one of
        # Faust's own periodic commits would, and stopping the worker stops the wait.
        self.__dict__["_cci_commit_soon"] = self.add_future(self._commit_after(after))

    async def _commit_after(self, after: float) -> None:
        await asyncio.sleep(after)
        if not self.should_stop:
            await self.commit()

    def inputs_open(self) -> asyncio.Event:
        """Set while inputs may be processed: once Faust has begun the transactions and
        seeked the partitions to their committed offsets, until it ends the transactions."""
        gate: asyncio.Event | None = self.__dict__.get("_cci_inputs_open")
        if gate is None:
            gate = self.__dict__["_cci_inputs_open"] = asyncio.Event()
        return gate

    async def perform_seek(self) -> None:
        # Faust seeks after beginning the transactions of a new assignment, at start and after
        # every rebalance: from here on the committed offsets tell what was processed.
        await super().perform_seek()
        self.inputs_open().set()

    def _forget_acks(self, offsets: dict[TP, int]) -> None:
        # Faust still records acknowledgements; drop what the commit covers, or they pile up.
        for tp, offset in offsets.items():
            self._acked[tp] = [o for o in self._acked[tp] if o >= offset]
            self._acked_index[tp] = {o for o in self._acked_index[tp] if o >= offset}
            self._gap[tp].chop(0, offset)

    def owns(self, tp: TP) -> bool:
        """False for a partition revoked and not assigned again: inputs of it still in a
        buffer belong to another worker now."""
        return tp not in self.__dict__.setdefault("_cci_revoked", set())

    async def commit_revoked(self, revoked: set[TP]) -> None:
        """Commit what was processed of the `revoked` partitions and end their transactions,
        before the stage forgets how far it got in them.

        Faust commits at a revocation only while the consumer still has an assignment; a worker
        that lost its partitions (paused past its session timeout) has none by then, and its
        transactions stayed open across the rebalance, holding outputs of inputs that the seek
        to the committed offsets then handed it again: processed twice, in one transaction.
        Whoever took the partitions over has fenced these transactions, and then the commit
        fails and the worker restarts on a fresh store; otherwise they are still the stage's
        own, and committing them keeps the table store, the outputs and the offsets as one."""
        async with processing_lock(self.app):
            if not cast(Any, self.app.tables).recovery.completed.is_set():
                return
            # Nothing more of the old assignment: inputs wait for the new one's seek.
            self.inputs_open().clear()
            offsets = self._processed_since_commit(lambda tp: tp in revoked)
            try:
                await flush_transactions(self.app)
                if offsets:
                    await self.transactions.commit(offsets, start_new_transaction=False)
            except Exception as exc:
                # Fenced: the partitions and their open transactions are another worker's
                # now. aiokafka would only log a failed rebalance callback and carry on with
                # this worker's state half forgotten; a restart rebuilds it from the changelogs.
                log.error("commit before the rebalance failed: %s", failure(exc))
                await self.app.crash(exc)
                return
            if offsets:
                cast(Any, self.app.tables).on_commit(offsets)
                self._committed_offset.update(offsets)
                self._forget_acks(offsets)
                log.info("Committed %d revoked partitions before the rebalance", len(offsets))

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        await self.commit_revoked(revoked)
        # A partition assigned again starts from its committed offset, wherever that is now.
        for tp in revoked:
            self.__dict__.setdefault("_cci_next", {}).pop(tp, None)
            self.__dict__.setdefault("_cci_refetch", {}).pop(tp, None)
        self.__dict__.setdefault("_cci_revoked", set()).update(revoked)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self.__dict__.setdefault("_cci_revoked", set()).difference_update(assigned)
        await super().on_partitions_assigned(assigned, generation_id)


# The transport class names its consumer and transaction manager as class attributes: the
# extension point.
aiokafka_driver.Transport.TransactionManager = SourcePartitionTransactions
aiokafka_driver.Transport.Consumer = LockedCommitConsumer
aiokafka_driver.Transport.Producer = ConcurrentCommitProducer
install_fetch_starts()


def _keep_input_buffers(app: faust.App) -> None:
    """Faust empties every stream buffer each time it resumes the flow of messages, trusting
    its read offsets to fetch them again, which they do not (see `_InputReadOffsets`). Only
    the changelog buffer is emptied here; the inputs left in a stream's buffer are processed
    or skipped by offset in `StageContext.process`."""
    flow = app.flow_control

    def clear_changelog_buffer() -> None:
        queue = cast(Any, app.tables)._changelog_queue
        if queue is not None:
            queue.clear()

    flow.clear = clear_changelog_buffer  # type: ignore[method-assign]


async def flush_transactions(app: Any) -> None:
    """Hand the open transactions' producers what the transactions are to hold and has not
    been sent yet: the outputs' batches and the tables' changelog records. Called before
    every commit, whichever transactions it ends."""
    await send_batches(app)
    await send_pending(app)


async def admit(lock: asyncio.Lock, gate: asyncio.Event, owned: Callable[[], bool]) -> bool:
    """Take the processing lock for an input once inputs may be processed (`gate`, see
    `LockedCommitConsumer.inputs_open`); False, without the lock, when the input's partition
    is no longer `owned`.

    Faust's stream buffers keep delivering during a rebalance: between Faust ending the
    transactions and its seek to the committed offsets an input must wait, neither processed in
    a transaction that has ended nor dropped (the stage then stalled for good)."""
    while True:
        if not gate.is_set():
            if not owned():
                return False
            # Looks again now and then: at a rebalance Faust waits for the inputs it handed out
            # to be acknowledged, so one of a revoked partition must not wait on.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), _GATE_POLL)
            continue
        await lock.acquire()
        if gate.is_set():  # the commit takes the lock too: it may have ended them meanwhile
            return True
        lock.release()


class OutputTooLarge(Exception):
    """An output or a table record bigger than the largest message the producer may send.

    Raised before anything of the input is sent, so that the input ends as one dead letter
    (`output-too-large`) rather than as part of its outputs plus a dead letter."""

    reason = "output-too-large"


def message_size(key: bytes | None, value: bytes | None, headers: Any = None) -> int:
    """The size the producer gives a message when it compares it with its maximum."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers or [])))


@dataclass
class StageContext:
    """What a stage needs besides its own logic, built once per worker."""

    stage: str
    settings: Settings
    app: faust.App
    reference: ReferenceData
    catalogue: SchemaCatalogue
    topics: dict[str, Any]
    metrics: StageMetrics

    def source(self, *logicals: str) -> Any:
        """The input topics of an agent; several topics form one co-partitioned group."""
        return self.app.topic(
            *(topic_name(self.settings.namespace, logical) for logical in logicals),
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
        in_worker = self.app.in_transaction  # Faust's test_context never recovers anything
        consumer = cast(LockedCommitConsumer, self.app.consumer) if in_worker else None
        idle_commit = self.settings.idle_commit
        async for event in stream.events():
            message = event.message
            # Faust acknowledges an event when the loop asks for the next one, before it
            # waits for anything: the commit, which needs the lock, cannot slip in between
            # the end of this block and that acknowledgement.
            if consumer is None:
                await lock.acquire()
            elif not await admit(lock, consumer.inputs_open(), partial(consumer.owns, message.tp)):
                continue
            try:
                if consumer is not None:
                    if not consumer.owns(message.tp):
                        continue
                    expected = consumer.processed_until(message.tp)
                    if expected is not None:
                        if message.offset < expected:
                            # Delivered before Faust's seek and again after it: processed once.
                            self.metrics.handled(self.topic_label(message.topic), "duplicate")
                            continue
                        if skips_inputs(message, expected):
                            # Fetched past inputs that never reached the stream: fetched again.
                            self.metrics.handled(self.topic_label(message.topic), "refetched")
                            await consumer.refetch(message.tp, expected)
                            continue
                await self._process_one(message, handle, name)
                if consumer is not None:
                    consumer.mark_processed(message.tp, message.offset, message.timestamp)
            finally:
                lock.release()
            if consumer is not None and idle_commit and stream.channel.queue.empty():
                consumer.commit_soon(idle_commit)

    async def _process_one(
        self, message: Any, handle: Callable[[Any], Awaitable[None]], name: str
    ) -> None:
        topic = self.topic_label(message.topic)
        began = time.perf_counter()
        try:
            await handle(message)
            outcome = "processed"
        except OutputTooLarge as exc:
            self.metrics.failed(exc)
            await self.dead_letter(message, exc.reason, str(exc))
            outcome = "failed"
        except Exception as exc:
            log.error("%s failed on %s/%s: %s", name, message.topic, message.offset, failure(exc))
            self.metrics.failed(exc)
            await self.dead_letter(
                message, "processing-error", repr(exc), logged=type(exc).__name__
            )
            outcome = "failed"
        self.metrics.handled(topic, outcome, time.perf_counter() - began)

    def topic_label(self, topic: str) -> str:
        """A topic's name without the namespace: a bounded label whatever the namespace."""
        prefix = f"{self.settings.namespace}."
        return topic[len(prefix) :] if topic.startswith(prefix) else topic

    @cached_property
    def max_message_size(self) -> int:
        """The largest message the stage's producer sends, outputs and dead letters alike.
        Kept: Faust's settings object costs microseconds per read, and every input and output
        is checked against it."""
        return int(self.app.conf.producer_max_request_size)

    async def decode(self, message: Any, logical: str) -> dict[str, Any] | None:
        """The Avro-native record of `message`, or None once it went to the dead letters."""
        value = message.value or b""
        try:
            if len(value) > self.max_message_size:
                # A compressed batch can carry a value far above the broker's limit; nothing
                # that big can be answered, and decoding it could take the worker's memory.
                raise DecodeError(
                    "oversized",
                    f"{len(value)} bytes, more than the {self.max_message_size} a stage can write",
                )
            record = self.catalogue.decode(logical, value)
            check_event_id(record)
            return record
        except DecodeError as exc:
            await self.dead_letter(message, exc.reason, exc.detail)
            return None

    def _fit(self, what: str, key: bytes | None, value: bytes | None, headers: Any = None) -> None:
        size = message_size(key, value, headers)
        if size > self.max_message_size:
            raise OutputTooLarge(
                f"{what}: {size} bytes, more than the {self.max_message_size} a message may have"
            )

    def table_write(self, table: Any, key: str, value: Any) -> TableWrite:
        """`table[key] = value`, serialised once and checked to fit its changelog; OutputTooLarge
        otherwise. A stage that emits before it writes its state calls this first, so that
        nothing is sent when the write cannot be made."""
        write = table_write(table, key, value)
        self._fit(f"{table.name} record", write.key_bytes, write.value_bytes)
        return write

    async def put(self, write: TableWrite) -> None:
        """Make `write`, with its changelog record sent in this input's transaction, just before
        it commits, rather than left to Faust's background buffer (see the module docstring and
        `streams.table_writes`)."""
        if not self.app.in_transaction:  # at-least-once (unit tests): Faust's own path is right
            write.table[write.key] = write.value
            return
        event = current_event()
        assert event is not None, "tables are written while processing an input"
        store(write)
        # Sent by the commit, once per key: see streams.table_writes.
        pending_changelog(self.app).add(write, event.message.partition)

    async def emit(
        self, outputs: Iterable[Output], headers: Any = None, embedded: Embedded | None = None
    ) -> None:
        """Encode and measure everything first, then send: a failure leaves nothing
        half-sent. `embedded`: an input some outputs carry whole (see `Embedded`)."""
        encoded = [
            (
                o.logical,
                self.topics[o.logical],
                o.key,
                self.catalogue.encode(o.logical, o.record, embedded),
            )
            for o in outputs
        ]
        for logical, _, key, value in encoded:
            self._fit(logical, key, value, headers)
        # The Kafka timestamp stays the time of production (None): event time lives in
        # `occurredAt`, and a broker applies retention to Kafka timestamps, so an old event
        # time would have the record deleted at once.
        if not self.app.in_transaction:  # at-least-once (unit tests): Faust's own path
            for _, topic, key, value in encoded:
                await topic.send(key=key, value=value, headers=headers)
            return
        # Straight to the transactions, which route each send as Faust's Topic.send ends up
        # doing (SourcePartitionTransactions): the path around it (a pending message, a future
        # and sensor calls per send) showed in the intake's profile, and no stage uses any of
        # it (docs/decisions.md, Exactly-once, 13).
        transactions = cast(Any, self.app.consumer).transactions
        batches = output_batches(self.app)
        for _, topic, key, value in encoded:
            await transactions.append(batches, topic.get_topic_name(), key, value, headers)

    async def dead_letter(
        self, message: Any, reason: str, error: str, logged: str | None = None
    ) -> None:
        """Send `message` to the stage's dead letters with `error`; the log gets `logged`
        instead when `error` may quote the record (see `failure`)."""
        self.metrics.dead_letter(reason)
        # The dead letter carries the original key and headers twice (in its record and on the
        # message) and its value once; what does not fit one message is cut, and said so.
        key, value, headers, cut = fit_original(
            message.key,
            message.value,
            list(_headers(message.headers)),
            self.max_message_size - _DEAD_LETTER_RESERVE,
        )
        if cut:
            error = f"{cut}; {error}"
        log.warning(
            "dead letter %s/%s/%s: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            reason,
            # An error may quote a value of the message: a huge one must not flood the log.
            (error if logged is None else logged)[:_LOGGED_ERROR],
        )
        out = dead_letter(
            self.stage,
            reason,
            error,
            message.topic,
            message.partition,
            message.offset,
            datetime.fromtimestamp(message.timestamp, UTC) if message.timestamp else None,
            key,
            value,
            headers,
        )
        await self.emit([out], headers=[*headers, ("cci-dead-letter-reason", reason.encode())])


# Room in a dead letter for everything but the original: stage, reason, the error (at most
# 2,000 characters, up to 4 bytes each), source topic and the record's framing.
_DEAD_LETTER_RESERVE = 16 * 1024
_LOGGED_ERROR = 500
# Seconds an input waiting for the transactions looks again whether its partition was revoked.
_GATE_POLL = 0.5
# Seconds a refetch waits for the broker to say where a partition begins.
_ASK_BROKER = 10.0


def _headers(headers: Any) -> Iterable[tuple[str, bytes | None]]:
    if not headers:
        return []
    items = headers.items() if hasattr(headers, "items") else headers
    return [(str(k), v if v is None else bytes(v)) for k, v in items]


def make_app(stage: str, settings: Settings) -> faust.App:
    app = faust.App(
        group_id(settings.namespace, stage),
        store=settings.store,
        processing_guarantee="exactly_once",
        topic_replication_factor=settings.replication,
        **{
            **client_settings(settings, stage),
            # Outputs are visible at the commit only, and the commit flushes what lingers:
            # lingering until then costs no latency and sends a transaction's outputs in a
            # few large produce requests instead of one small request per input.
            "producer_linger": settings.commit_interval,
            "producer_partitioner": partition_by_key,
        },
    )
    # Read by the consumer thread when it builds its consumer (`BrokerStableOffsets`).
    app.__dict__["_cci_fetch_wait"] = (
        settings.fetch_min_bytes,
        round(settings.fetch_max_wait * 1000),
    )
    _keep_input_buffers(app)
    return app


def watch_broker(app: faust.App, settings: Settings, metrics: StageMetrics, topic: str) -> None:
    probe: BrokerProbe | None = None

    async def probe_broker() -> None:
        nonlocal probe
        # Made on first use: Faust's test_context never starts timers and needs no client.
        probe = probe or BrokerProbe(settings.kafka_client(), topic)
        # librdkafka blocks until the answer or the timeout: keep it off the event loop.
        metrics.broker(await asyncio.get_running_loop().run_in_executor(None, probe.check))

    app.timer(interval=settings.broker_probe_interval)(probe_broker)


def make_context(stage: str, settings: Settings, app: faust.App) -> StageContext:
    spec = topology(settings.fused_assessment)[stage]
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
    metrics = StageMetrics(stage)
    context = StageContext(
        stage=stage,
        settings=settings,
        app=app,
        reference=load_reference(settings.reference_dir),
        catalogue=catalogue(settings.schemas_dir),
        topics=topics,
        metrics=metrics,
    )
    metrics.watch_lag(
        group_id(settings.namespace, stage),
        # Only a running worker has a consumer to ask; Faust's test_context has none.
        lambda: cast(LockedCommitConsumer, app.consumer).lag() if app.in_transaction else [],
    )

    def count_rebalance(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        metrics.rebalances.labels(stage).inc()

    app.on_partitions_assigned.connect(count_rebalance)
    watch_broker(app, settings, metrics, topic_name(settings.namespace, spec.reads[0]))

    @app.page("/metrics")
    async def metrics_view(web: Any, request: Any) -> Any:
        # aiohttp takes the charset apart from the media type.
        media_type = CONTENT_TYPE_LATEST.split("; charset=")[0]
        return web.bytes(generate_latest(metrics.registry), content_type=media_type)

    @app.page("/health")
    async def health_view(web: Any, request: Any) -> Any:
        # Liveness: the worker's event loop answers. Nothing more, so that a slow recovery or a
        # broker outage (which the worker rides out) does not get the process restarted.
        return web.json({"status": "ok"})

    @app.page("/ready")
    async def ready_view(web: Any, request: Any) -> Any:
        # Readiness: its tables recovered from their changelogs. Before that the stage processes
        # nothing and the decision stage's status query would answer from empty tables.
        ready = bool(cast(Any, app.tables).recovery.completed.is_set())
        return web.json({"ready": ready}, status=200 if ready else 503)

    return context
