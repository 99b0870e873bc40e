"""Decision stage: COP exchange, timers, control, release and status (spec §8-§10).

One agent reads every input of the decision as one co-partitioned group, so that all events of
an MRN, and the clock ticks that fire its timers, meet on one partition and one worker. Each MRN
has one state in the `declarations` table; `streams.decision.step` says what an event does to it.
The worker also answers `GET /declarations/{mrn}` from that table, routed to the worker that
holds the MRN's partition.

In the fused topology (`Settings.fused_assessment`) the stage also assesses each acceptance for
risk and duties as it takes it in (`streams.fused`), and reads no assessments.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from faust.streams import current_event

from streams.app import StageContext, failure
from streams.codec import Embedded
from streams.decision import STATES, DecisionConfig, Step, deadlines, instant, millis, step
from streams.fused import accept_and_assess
from streams.table_writes import table_read
from streams.timers import TimerIndex
from streams.topics import topic_name, topology

log = logging.getLogger(__name__)

STAGE = "decision"
TERMINAL_EVENTS = {
    "declaration.released": "released",
    "declaration.not-released": "not-released",
    "declaration.invalidated": "invalidated",
}


def event_message() -> Any:
    event = current_event()
    assert event is not None, "called while processing an input"
    return event.message


def status_view(state: dict[str, Any] | None, mrn: str) -> tuple[int, dict[str, Any]]:
    """The body of `GET /declarations/{mrn}` (spec §10) and its HTTP status."""
    if state is None or not state.get("accepted"):
        return 404, {"error": "unknown MRN", "mrn": mrn}
    return 200, {
        "mrn": mrn,
        "lrn": state["lrn"],
        "state": state["state"],
        "history": [
            {"state": name, "occurredAt": instant(ms).isoformat(timespec="milliseconds")}
            for name, ms in state["history"]
        ],
    }


def build(ctx: StageContext) -> Any:
    app = ctx.app
    states = ctx.table("declarations")
    config = DecisionConfig(
        cop_response_timeout=ctx.settings.cop_response_timeout,
        lapse_after=ctx.settings.lapse_after,
        schemas=ctx.catalogue,
    )
    inputs = topology(ctx.settings.fused_assessment)[STAGE].reads
    logical_of = {topic_name(ctx.settings.namespace, logical): logical for logical in inputs}
    fused = ctx.settings.fused_assessment
    timers = TimerIndex()
    metrics = ctx.metrics
    for name in STATES:  # every state has a series, at 0 until a declaration is in it
        metrics.declarations.labels(name).set(0)

    async def apply(
        mrn: str,
        partition: int,
        result: Step,
        before: str | None,
        embedded: Embedded | None = None,
    ) -> None:
        if result.state is None:
            return
        # The partition is kept in the state so that the timer index can be rebuilt from the
        # table after a rebalance.
        state = {**result.state, "partition": partition}
        # A state too big for its changelog must stop the step before its outputs leave.
        write = ctx.table_write(states, mrn, state)
        await ctx.emit(result.outputs, embedded=embedded)
        await ctx.put(write)
        for deadline in deadlines(state):
            timers.add(partition, deadline, mrn)
        observe(state, before, result)

    def observe(state: dict[str, Any], before: str | None, result: Step) -> None:
        after = state.get("state")
        if after != before:
            if before is not None:
                metrics.declarations.labels(before).dec()
            if after is not None:
                metrics.declarations.labels(after).inc()
        for out in result.outputs:
            if out.logical in TERMINAL_EVENTS and state.get("acceptedAt") is not None:
                metrics.decided(TERMINAL_EVENTS[out.logical], state["acceptedAt"])
        metrics.timers.set(timers.pending())

    def state_of(mrn: str) -> tuple[dict[str, Any] | None, str | None]:
        current = table_read(states, mrn)
        return current, (current or {}).get("state")

    def rebuild() -> None:
        """The timer index and the count of declarations by state, from the table."""
        entries: list[tuple[int, int, str]] = []
        counts: Counter[str] = Counter()
        for mrn, state in states.data.items():
            if state is None or "partition" not in state:
                continue
            entries.extend((state["partition"], d, mrn) for d in deadlines(state))
            if state.get("state"):
                counts[state["state"]] += 1
        timers.rebuild(entries)
        for name in STATES:
            metrics.declarations.labels(name).set(counts[name])
        metrics.timers.set(timers.pending())
        log.info("timer index rebuilt: %d pending", timers.pending())

    async def on_tick(partition: int, tick: dict[str, Any]) -> None:
        if not timers.built:
            rebuild()
        for mrn in timers.due(partition, millis(tick["occurredAt"])):
            try:
                current, before = state_of(mrn)
                await apply(mrn, partition, step(current, "clock.tick", tick, config), before)
            except Exception as exc:
                # One MRN that cannot be decided must not hold back the other timers of the
                # partition: its timer is set aside, with the tick, in the dead letters.
                log.error("timer of %s failed on tick %s: %s", mrn, tick["eventId"], failure(exc))
                await ctx.dead_letter(
                    event_message(),
                    "timer-error",
                    f"{mrn}: {exc!r}",
                    logged=f"{mrn}: {type(exc).__name__}",
                )

    async def handle(message: Any) -> None:
        logical = logical_of[message.topic]
        record = await ctx.decode(message, logical)
        if record is None:
            return
        if logical == "clock.tick":
            await on_tick(message.partition, record)
            return
        mrn = record["mrn"]
        if message.key != mrn.encode():
            # The key decides the partition, and the partition holds the MRN's state.
            await ctx.dead_letter(message, "key-mismatch", f"key must be the MRN {mrn!r}")
            return
        current, before = state_of(mrn)
        if fused and logical == "declaration.accepted":
            result = accept_and_assess(current, record, config, ctx.reference)
            for out in result.outputs:
                if out.logical == "risk.assessed":
                    metrics.controls.labels(out.record["control"]).inc()
        else:
            result = step(current, logical, record, config)
        if result.unknown_mrn:
            await ctx.dead_letter(message, "unknown-mrn", f"no accepted declaration {mrn}")
            return
        embedded = None
        if logical == "declaration.accepted" and any(
            out.logical == "cop.forwarded" for out in result.outputs
        ):
            # The forward copies the declaration's bytes from the acceptance, cut only when
            # this step forwards: always in the fused topology, seldom in the four stages.
            embedded = ctx.catalogue.last_field(message.value, "declaration", record["declaration"])
        await apply(mrn, message.partition, result, before, embedded)

    def forget_timers(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        timers.clear()  # rebuilt from the table on the next tick, for the new assignment

    app.on_partitions_revoked.connect(forget_timers)
    app.on_partitions_assigned.connect(forget_timers)

    accepted_topic = ctx.source("declaration.accepted")

    @app.page("/declarations/{mrn}")
    @app.topic_route(accepted_topic, match_info="mrn")
    async def declaration_status(web: Any, request: Any, mrn: str) -> Any:
        code, body = status_view(states.get(mrn), mrn)
        return web.json(body, status=code)

    @app.agent(ctx.source(*inputs), name=f"{app.conf.id}-agent")
    async def decision(stream: Any) -> None:
        await ctx.process(stream, handle, STAGE)

    return decision
