"""The decision agent driven through Faust's test_context (memory table, no broker): how the
stage routes each input topic, refuses what it must, and fires timers on clock ticks.

The agent reads eight topics as one group; Faust's test agent names the topic of a message it
builds `<internal>` when its channel has several, so `drive` sets the topic of each message."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from streams import decision as decision_logic
from streams.app import make_app, make_context
from streams.config import Settings
from streams.events import Output
from streams.stages import decision
from streams.topics import event_key, topic_name
from tests.unit.test_decision import (
    DAY,
    MRN,
    SCHEMAS,
    H,
    Input,
    accepted,
    cop,
    duties,
    label,
    risk,
    through_forward,
    tick,
)

NAMESPACE = "unit"
OTHER = "26FR0000000000C3R0"

# (logical name of the topic, key, input): the topic and the key may be wrong on purpose.
Message = tuple[str, bytes | None, Input]


def message(event: Input, key: bytes | None = None) -> Message:
    logical, record = event
    return logical, key if key is not None else event_key(logical, record), event


def drive(messages: list[Message], state_dir: Path) -> list[Output]:
    """Feed the messages to a fresh decision agent on partition 0; return what it emitted."""
    settings = Settings(namespace=NAMESPACE, store="memory://", state_dir=state_dir, partitions=1)
    app = make_app("decision", settings)
    app.finalize()
    app.flow_control.resume()
    ctx = make_context("decision", settings, app)
    emitted: list[Output] = []

    async def record(outputs: Any, headers: Any = None, embedded: Any = None) -> None:
        emitted.extend(outputs)

    ctx.emit = record  # type: ignore[method-assign]
    agent = decision.build(ctx)

    async def run() -> None:
        async with agent.test_context() as test_agent:
            build_message = test_agent.to_message
            topic = ""

            def on_topic(*args: Any, **kwargs: Any) -> Any:
                built = build_message(*args, **kwargs)
                built.topic = topic
                return built

            test_agent.to_message = on_topic
            for on, key, (logical, rec) in messages:
                topic = topic_name(NAMESPACE, on)
                await test_agent.put(SCHEMAS.encode(logical, rec), key=key, partition=0)

    asyncio.run(run())
    return emitted


def labels(outputs: list[Output]) -> list[str]:
    return [
        f"{o.record['reason']}" if o.logical == "dead-letter" else label(o.logical, o.record)
        for o in outputs
    ]


def test_acceptance_risk_and_duties_on_their_topics_give_the_forward(tmp_path: Path) -> None:
    out = drive([message(event) for event in through_forward("A", "PHYSICAL")], tmp_path)
    assert labels(out) == [
        "status:ACCEPTED",
        "status:RISK_ASSESSED",
        "forwarded:CONTROL_REQUIRED:PHYSICAL",
        "status:FORWARDED",
    ]
    assert {o.key for o in out} == {MRN.encode()}


def test_the_forward_waits_for_the_acceptance_whatever_topic_comes_first(tmp_path: Path) -> None:
    out = drive([message(duties()), message(risk("NONE")), message(accepted("A"))], tmp_path)
    assert labels(out) == ["forwarded:RELEASE_ALLOWED:NONE", "status:FORWARDED"]


def test_a_cop_answer_for_an_unknown_mrn_is_a_dead_letter(tmp_path: Path) -> None:
    answer = message(cop("NONE", H, mrn=OTHER))
    out = drive([*(message(e) for e in through_forward("A", "NONE")), answer], tmp_path)
    [dead] = [o for o in out if o.logical == "dead-letter"]
    assert dead.record["reason"] == "unknown-mrn"
    assert dead.record["stage"] == "decision"
    assert dead.record["sourceTopic"] == topic_name(NAMESPACE, "cop.risk-result")
    assert dead.key == dead.record["key"] == OTHER.encode()
    assert dead.record["value"] == SCHEMAS.encode("cop.risk-result", answer[2][1])
    assert labels(out)[-1] == "unknown-mrn"  # and nothing else for it


def test_a_message_keyed_by_another_mrn_is_a_dead_letter(tmp_path: Path) -> None:
    out = drive([message(accepted("A"), key=OTHER.encode())], tmp_path)
    assert labels(out) == ["key-mismatch"]


def test_a_message_of_another_kind_on_a_topic_is_a_dead_letter(tmp_path: Path) -> None:
    # A risk.assessed record published on the accepted topic.
    _, key, event = message(risk("NONE"))
    out = drive([("declaration.accepted", key, event)], tmp_path)
    assert labels(out) == ["wrong-schema"]


def test_a_tick_fires_the_timers_that_are_due_and_only_those(tmp_path: Path) -> None:
    later = [accepted("D", mrn=OTHER), risk("NONE", 3 * H, OTHER), duties(3 * H, OTHER)]
    messages = [
        message(tick(0 * H)),  # builds the (empty) timer index before any state exists
        *(message(e) for e in through_forward("A", "NONE")),
        *(message(e) for e in later),
        message(tick(2 * H)),  # MRN's COP timeout (forwarded at 0 h); OTHER's is at 5 h
        message(tick(2 * H + H)),  # nothing new is due
        message(tick(5 * H)),  # OTHER's COP timeout: type D, still waiting for the goods
        message(tick(30 * DAY)),  # OTHER lapses
    ]
    out = drive(messages, tmp_path)
    assert len(out) == 8 + 6  # two forwards with their statuses, then what the ticks fired
    fired = [(o.record["mrn"], label(o.logical, o.record), o.record["occurredAt"]) for o in out[8:]]
    at_2h, at_30d = tick(2 * H)[1]["occurredAt"], tick(30 * DAY)[1]["occurredAt"]
    assert fired == [
        (MRN, "released", at_2h),
        (MRN, "IE429", at_2h),
        (MRN, "status:RELEASED", at_2h),
        (OTHER, "not-released:LAPSED", at_30d),
        (OTHER, "IE451", at_30d),
        (OTHER, "status:NOT_RELEASED", at_30d),
    ]


@pytest.mark.parametrize("first_tick", [pytest.param(True, id="index-built-early"), False])
def test_timers_set_before_the_first_tick_fire(tmp_path: Path, first_tick: bool) -> None:
    # Without an early tick the index is built from the table at the first tick.
    early = [message(tick(0 * H))] if first_tick else []
    forward = [message(e) for e in through_forward("A", "NONE")]
    out = drive([*early, *forward, message(tick(2 * H))], tmp_path)
    assert labels(out)[-3:] == ["released", "IE429", "status:RELEASED"]


def test_a_failure_on_one_timer_does_not_lose_the_other_due_timers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    failures: list[str] = []
    real = decision_logic.step

    def fails_once_on_a_tick(state: Any, logical: str, record: Any, config: Any) -> Any:
        if logical == "clock.tick" and not failures:
            failures.append(state["mrn"])
            raise RuntimeError("boom")
        return real(state, logical, record, config)

    monkeypatch.setattr(decision, "step", fails_once_on_a_tick)
    both = [
        *through_forward("A", "NONE"),
        accepted("A", mrn=OTHER),
        risk("NONE", mrn=OTHER),
        duties(mrn=OTHER),
    ]
    out = drive([*(message(e) for e in both), message(tick(2 * H)), message(tick(3 * H))], tmp_path)
    [dead] = [o.record for o in out if o.logical == "dead-letter"]
    assert dead["reason"] == "timer-error" and dead["error"].startswith(failures[0])
    # The other MRN's timer fires on the same tick; the failed one is set aside (it comes back
    # when the index is rebuilt from the table) instead of failing every later tick.
    released = {o.record["mrn"] for o in out if o.logical == "declaration.released"}
    assert released == {MRN, OTHER} - set(failures)
