"""How far a table's recovery reads a changelog, asked of the real broker.

A stage's changelogs are written in transactions; the recovery must read up to the last stable
offset, which is the broker's to tell. Faust takes it from aiokafka's fetch cache instead, empty
until the partition's first fetch: a worker restarted after SIGKILL once recovered nothing
(docs/decisions.md, Exactly-once)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.structs import TopicPartition
from faust.transport.drivers import aiokafka as aiokafka_driver

from streams.app import BrokerStableOffsets
from streams.config import Settings
from tests.integration.conftest import one_partition_topic, read_committed_consumer


def _changelog(settings: Settings) -> str:
    return one_partition_topic(settings, "probe-changelog")


async def _highwaters(settings: Settings, topic: str) -> dict[str, Any]:
    tp = TopicPartition(topic, 0)
    writer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap, transactional_id=f"{topic}-writer"
    )
    await writer.start()
    try:
        async with writer.transaction():
            for n in range(3):
                await writer.send_and_wait(topic, b"committed-%d" % n, key=b"k%d" % n)
        # A transaction still open when the worker recovers: the offsets 0-2 are committed,
        # 3 is the commit marker, 4 on belongs to the open one.
        await writer.begin_transaction()
        await writer.send_and_wait(topic, b"open", key=b"k0")

        # The consumer a transactional Faust worker makes: read committed, assigned, and not
        # fetched from yet, as at the start of a recovery.
        async with read_committed_consumer(settings) as consumer:
            consumer.assign([tp])
            thread = SimpleNamespace(
                _ensure_consumer=lambda: consumer, consumer=SimpleNamespace(in_transaction=True)
            )
            faust_way = await aiokafka_driver.AIOKafkaConsumerThread._highwaters(
                thread,  # type: ignore[arg-type]
                [tp],
            )
            ours = await BrokerStableOffsets._highwaters(thread, [tp])  # type: ignore[arg-type]
        await writer.abort_transaction()
    finally:
        await writer.stop()
    return {"faust": faust_way[tp], "ours": ours[tp]}


def test_recovery_reads_up_to_the_last_stable_offset_before_any_fetch(
    settings: Settings,
) -> None:
    found = asyncio.run(_highwaters(settings, _changelog(settings)))
    # Faust's own answer: nothing known, which its recovery reads as an empty changelog.
    assert found["faust"] is None
    # The broker's: up to the open transaction, whose writes may still be aborted.
    assert found["ours"] == 4
