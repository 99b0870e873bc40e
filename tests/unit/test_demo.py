"""The demo's arithmetic and bookkeeping: percentiles, the counts of the summary, and how the
messages it reads fold into per-declaration facts. The run itself needs a broker (`make run`)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from streams.codec import catalogue
from streams.config import ROOT
from streams.cop_simulator import Mix, answer_forward, answer_status
from streams.demo import (
    NO_STATUS,
    Declaration,
    Flow,
    awaits_goods,
    decision_latencies,
    invalidates,
    outcome_counts,
    unexplained,
    watched_topics,
)
from streams.jsonform import from_json
from streams.kafka_io import Received
from streams.run_report import percentile
from streams.topics import dead_letter_topic, topic_name

SCHEMAS = catalogue(ROOT / "schemas")
AT = datetime(2026, 4, 1, 8, 20, tzinfo=UTC)
NS = "t"


def declaration(mrn: str = "M1", **fields: Any) -> Declaration:
    fields.setdefault("pre_lodged", False)
    return Declaration(mrn=mrn, key=f"EORI/{mrn}", accepted_at=AT, **fields)


# --- percentile ----------------------------------------------------------------------------


def test_percentile_is_the_nearest_rank() -> None:
    values = list(range(100, 0, -1))  # 1..100, unsorted
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [50, 95, 99, 100]
    # Ten values: p95 is the 10th (ceil(9.5)), p50 the 5th; never an interpolation.
    ten = [10, 20, 30, 40, 50, 60, 70, 80, 90, 1000]
    assert (percentile(ten, 50), percentile(ten, 95), percentile(ten, 99)) == (50, 1000, 1000)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.5], 1) == percentile([7.5], 99) == 7.5


def test_percentile_refuses_no_values_and_a_percent_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    for percent in (0, -1, 100.5):
        with pytest.raises(ValueError):
            percentile([1, 2], percent)


# --- the summary's counts ------------------------------------------------------------------


def test_outcome_counts_use_the_outcome_else_the_latest_status() -> None:
    declarations = [
        declaration("A", outcome="RELEASED", state="RELEASED"),
        declaration("B", outcome="NOT_RELEASED", reason="CONTROL_NOT_SATISFACTORY"),
        declaration("C", outcome="NOT_RELEASED", reason="LAPSED"),
        declaration("D", outcome="INVALIDATED", state="FORWARDED"),  # the outcome wins
        declaration("E", state="UNDER_CONTROL"),
        declaration("F", state="FORWARDED"),
        declaration("G"),
    ]
    assert outcome_counts(declarations) == Counter(
        {
            "RELEASED": 1,
            "NOT_RELEASED:CONTROL_NOT_SATISFACTORY": 1,
            "NOT_RELEASED:LAPSED": 1,
            "INVALIDATED": 1,
            "UNDER_CONTROL": 1,
            "FORWARDED": 1,
            NO_STATUS: 1,
        }
    )
    assert outcome_counts([]) == Counter()


def test_only_undecided_pre_lodged_declarations_without_goods_wait_with_a_reason() -> None:
    waiting = declaration("W", state="FORWARDED", pre_lodged=True)
    controlled = declaration("U", state="UNDER_CONTROL", pre_lodged=True)
    presented = declaration("P", state="FORWARDED", pre_lodged=True, presented=True)
    standard = declaration("S", state="FORWARDED")
    unreported = declaration("N", pre_lodged=True)  # the decision stage never saw it
    decided = declaration("R", outcome="RELEASED", pre_lodged=True)
    assert [awaits_goods(d) for d in (waiting, controlled, presented, standard)] == [
        True,
        True,
        False,
        False,
    ]
    assert not awaits_goods(unreported) and not awaits_goods(decided)
    everyone = [waiting, controlled, presented, standard, unreported, decided]
    assert unexplained(everyone) == ["N", "P", "S"]


def test_latencies_join_on_the_lodged_key_and_stop_at_the_jump() -> None:
    jump = AT + timedelta(hours=2)
    declarations = [
        declaration("A", decided_at=AT, decided_ts=1_500),
        declaration("B", decided_at=jump, decided_ts=9_000),  # decided by the tick: left out
        declaration("C"),  # undecided
        declaration("D", decided_at=AT, decided_ts=4_000),  # its lodging was never read
    ]
    lodged = {"EORI/A": 1_000, "EORI/B": 1_000, "EORI/C": 1_000}
    assert decision_latencies(declarations, lodged, jump) == [500]
    assert sorted(decision_latencies(declarations, lodged, None)) == [500, 8_000]


def test_the_trader_invalidates_a_seeded_two_percent() -> None:
    mrns = [f"26FR{i:012X}R{i % 10}" for i in range(20_000)]
    chosen = [m for m in mrns if invalidates(7, m)]
    assert 0.015 < len(chosen) / len(mrns) < 0.025
    assert chosen == [m for m in reversed(mrns) if invalidates(7, m)][::-1]
    assert chosen != [m for m in mrns if invalidates(8, m)]


# --- folding messages ----------------------------------------------------------------------


def message(logical: str, record: dict[str, Any], timestamp: int = 0, key: bytes = b"") -> Received:
    topic = {v: k for k, v in watched_topics(NS).items()}[logical]
    return Received(topic, 0, 0, timestamp, key, SCHEMAS.encode(logical, record), [])


def event(mrn: str, **fields: Any) -> dict[str, Any]:
    return {"eventId": str(uuid.uuid4()), "occurredAt": AT, "mrn": mrn, **fields}


def accepted(mrn: str, kind: str = "A") -> dict[str, Any]:
    lodged = json.loads((ROOT / "tests" / "fixtures" / "declaration-valid.json").read_text())
    lodged.update(
        additionalDeclarationType=kind, eventId=str(uuid.uuid4()), occurredAt=AT.isoformat()
    )
    record = from_json(SCHEMAS.latest("declaration.lodged").schema, lodged)
    return event(
        mrn,
        lrn=record["lrn"],
        declarantEori=record["declarant"]["eori"],
        declaration=record,
    )


def forwarded(mrn: str, kind: str) -> dict[str, Any]:
    return event(
        mrn,
        presentationOffice="NL000396",
        instruction="RELEASE_ALLOWED",
        control="NONE",
        totalDuty=Decimal("1.00"),
        totalVat=Decimal("2.00"),
        vatMemberState="NL",
        declaration=accepted(mrn, kind)["declaration"],
    )


def status(mrn: str, state: str) -> dict[str, Any]:
    return event(mrn, lrn="L", state=state, history=[{"state": state, "occurredAt": AT}])


def dead_letter(stage: str, source: str, key: bytes, reason: str) -> dict[str, Any]:
    return {
        "eventId": str(uuid.uuid4()),
        "occurredAt": AT,
        "stage": stage,
        "reason": reason,
        "error": "",
        "sourceTopic": source,
        "sourcePartition": 0,
        "sourceOffset": 0,
        "sourceTimestamp": None,
        "key": key,
        "value": b"",
        "headers": [],
    }


def test_a_declaration_is_followed_from_acceptance_to_its_outcome() -> None:
    mix = Mix(seed=3)
    flow = Flow(SCHEMAS, mix)
    record = accepted("M1", "D")
    key = f"{record['declarantEori']}/{record['lrn']}".encode()
    flow.absorb("declaration.lodged", Received("x", 0, 0, 1_000, key, b"\x00", []))
    assert flow.absorb("declaration.accepted", message("declaration.accepted", record)) is None
    d = flow.declarations["M1"]
    assert (d.pre_lodged, d.state, flow.intake.accepted) == (True, None, 1)

    first = flow.absorb(
        "declaration.status", message("declaration.status", status("M1", "ACCEPTED"))
    )
    assert first is d  # the first status: the trader may act now
    forward = forwarded("M1", "D")
    flow.absorb("cop.forwarded", message("cop.forwarded", forward))
    again = flow.absorb(
        "declaration.status", message("declaration.status", status("M1", "FORWARDED"))
    )
    assert again is None and d.forwarded and d.state == "FORWARDED"
    owed = {r["eventId"] for _, r in answer_forward(forward, mix)}
    assert flow.pending_answers() == len(owed) == 2  # presentation and risk result
    flow.answered.update(owed)
    assert flow.pending_answers() == 0

    flow.absorb("cop.goods-presented", message("cop.goods-presented", event("M1", location="X")))
    released = event("M1", totalDuty=Decimal("1.00"), totalVat=Decimal("2.00"))
    flow.absorb("declaration.released", message("declaration.released", released, 4_000))
    assert (d.presented, d.outcome, d.decided_at, d.decided_ts, d.outcomes) == (
        True,
        "RELEASED",
        AT,
        4_000,
        1,
    )
    assert decision_latencies([d], flow.lodged_ts, None) == [3_000]
    assert flow.decided() == 1


def test_a_second_outcome_is_counted_and_the_first_stands() -> None:
    flow = Flow(SCHEMAS, Mix())
    flow.absorb("declaration.accepted", message("declaration.accepted", accepted("M1")))
    refused = event("M1", reason="CONTROL_NOT_SATISFACTORY")
    flow.absorb("declaration.not-released", message("declaration.not-released", refused, 5))
    again = event("M1", reason="trader request")
    flow.absorb("declaration.invalidated", message("declaration.invalidated", again, 9))
    d = flow.declarations["M1"]
    assert (d.outcome, d.reason, d.decided_ts, d.outcomes) == (
        "NOT_RELEASED",
        "CONTROL_NOT_SATISFACTORY",
        5,
        2,
    )


def test_an_under_control_status_owes_a_control_result() -> None:
    mix = Mix(b1=0.5)
    flow = Flow(SCHEMAS, mix)
    flow.absorb("declaration.accepted", message("declaration.accepted", accepted("M1")))
    record = status("M1", "UNDER_CONTROL")
    flow.absorb("declaration.status", message("declaration.status", record))
    assert flow.owed == {r["eventId"] for _, r in answer_status(record, mix)}


def test_dead_letters_count_as_intake_outcomes_only_from_intake() -> None:
    flow = Flow(SCHEMAS, Mix())
    flow.absorb("declaration.accepted", message("declaration.accepted", accepted("M1")))
    flow.declarations["M1"].invalidation_requested = True
    intake = dead_letter("intake", topic_name(NS, "declaration.lodged"), b"k", "undecodable")
    lost = dead_letter("decision", topic_name(NS, "invalidation.requested"), b"M1", "unknown-mrn")
    for stage, record in (("intake", intake), ("decision", lost)):
        topic = dead_letter_topic(NS, stage)
        value = SCHEMAS.encode("dead-letter", record)
        flow.absorb(watched_topics(NS)[topic], Received(topic, 0, 0, 0, None, value, []))
    assert flow.intake.dead_letters == Counter({"undecodable": 1})
    assert flow.intake.total == 2  # the acceptance and the intake dead letter
    assert flow.later_dead_letters == Counter({"decision: unknown-mrn (requested)": 1})
    assert flow.declarations["M1"].invalidation_dead_lettered


def test_events_of_other_runs_and_tombstones_are_ignored() -> None:
    flow = Flow(SCHEMAS, Mix())
    topic = topic_name(NS, "declaration.status")
    assert flow.absorb("declaration.status", Received(topic, 0, 0, 0, b"M9", None, [])) is None
    stranger = message("declaration.status", status("M9", "RELEASED"))
    assert flow.absorb("declaration.status", stranger) is None
    assert flow.declarations == {} and flow.owed == set()


def test_lodged_messages_without_an_intake_outcome_are_pointed_at() -> None:
    flow = Flow(SCHEMAS, Mix())
    record = accepted("M1")
    kept = f"{record['declarantEori']}/{record['lrn']}".encode()
    lodged = topic_name(NS, "declaration.lodged")
    for offset, key in enumerate((kept, b"EORI/REJECTED", b"garbage-1", b"EORI/LOST")):
        flow.absorb("declaration.lodged", Received(lodged, 4, offset, 0, key, b"\x00", []))
    flow.absorb("declaration.accepted", message("declaration.accepted", record))
    rejected = {"eventId": "e", "occurredAt": AT, "lrn": "REJECTED", "declarantEori": "EORI"}
    rejected["errors"] = [{"code": "R001", "pointer": "/lrn", "message": "m"}]
    flow.absorb("declaration.rejected", message("declaration.rejected", rejected))
    garbage = dead_letter("intake", lodged, b"garbage-1", "undecodable")
    topic = dead_letter_topic(NS, "intake")
    value = SCHEMAS.encode("dead-letter", garbage)
    flow.absorb(watched_topics(NS)[topic], Received(topic, 0, 0, 0, None, value, []))
    assert flow.without_intake_outcome() == [f"{lodged}/4/3"]


def test_only_the_first_outcome_of_a_message_this_run_lodged_counts() -> None:
    ours = accepted("M1")
    key = f"{ours['declarantEori']}/{ours['lrn']}"
    flow = Flow(SCHEMAS, Mix(), lodged_keys={key})
    flow.absorb("declaration.accepted", message("declaration.accepted", ours))
    flow.absorb("declaration.accepted", message("declaration.accepted", accepted("M1")))
    earlier = accepted("M0")
    earlier["lrn"] = "LODGED-BY-AN-EARLIER-RUN"
    flow.absorb("declaration.accepted", message("declaration.accepted", earlier))
    assert (flow.intake.accepted, flow.intake_duplicates, flow.earlier) == (1, 1, 1)
    assert list(flow.declarations) == ["M1"]


def test_an_mrn_given_to_two_declarations_is_counted() -> None:
    flow = Flow(SCHEMAS, Mix())
    first, second = accepted("M1"), accepted("M1")
    second["lrn"] = "ANOTHER-LRN"
    flow.absorb("declaration.accepted", message("declaration.accepted", first))
    assert flow.reused_mrns == 0
    flow.absorb("declaration.accepted", message("declaration.accepted", second))
    assert (flow.intake.accepted, flow.intake_duplicates, flow.reused_mrns) == (2, 0, 1)
