"""Intake stage: lodged declarations in, acceptances and rejections out (spec §3-§4).

The agent reads raw bytes so that a message that does not decode reaches the dead-letter topic
instead of crashing the stream; everything it decides comes from `streams.lodging.lodge`.
"""

from __future__ import annotations

import logging
from typing import Any

from streams.app import StageContext
from streams.codec import Embedded
from streams.lodging import lodge
from streams.table_writes import table_read
from streams.topics import event_key

log = logging.getLogger(__name__)

STAGE = "intake"
SOURCE = "declaration.lodged"


def build(ctx: StageContext) -> Any:
    declarations = ctx.table("declarations")
    sequences = ctx.table("sequences")
    country = ctx.settings.country

    def count(outputs: Any) -> None:
        for out in outputs:
            if out.logical == "declaration.accepted":
                ctx.metrics.outcomes.labels("accepted").inc()
            elif out.logical == "declaration.rejected":
                ctx.metrics.outcomes.labels("rejected").inc()
                for error in out.record["errors"]:
                    ctx.metrics.rejections.labels(error["code"]).inc()

    async def handle(message: Any) -> None:
        record = await ctx.decode(message, SOURCE)
        if record is None:
            return
        expected = event_key(SOURCE, record)
        assert expected is not None  # a lodged declaration always has a key
        if message.key != expected:
            # The key decides the partition, and the partition holds the state that enforces
            # R090 and redelivery: a wrongly keyed declaration cannot be checked safely.
            await ctx.dead_letter(
                message, "key-mismatch", f"key must be declarant EORI/LRN, {expected!r}"
            )
            return
        key = expected.decode()
        partition_key = str(message.partition)
        sequence = table_read(sequences, partition_key) or 0
        result = lodge(
            record,
            table_read(declarations, key),
            sequence,
            message.partition,
            ctx.reference,
            country,
        )
        if result.state is None:
            log.info("redelivered event %s ignored", record["eventId"])
            return
        # A state too big for its changelog must stop the lodging before its outputs leave.
        write = ctx.table_write(declarations, key, result.state)
        # The acceptance carries the lodged declaration as it came: its bytes are reused.
        await ctx.emit(result.outputs, embedded=Embedded("declaration", message.value, record))
        count(result.outputs)
        await ctx.put(write)
        if result.sequence_used:
            await ctx.put(ctx.table_write(sequences, partition_key, sequence + 1))

    @ctx.app.agent(ctx.source(SOURCE), name=f"{ctx.app.conf.id}-agent")
    async def intake(stream: Any) -> None:
        await ctx.process(stream, handle, STAGE)

    return intake
