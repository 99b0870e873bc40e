"""Hostile input (issue 6): whatever reaches a stage, each message ends as exactly one dead
letter with a reason, one rejection naming rule codes, or the stage's normal outcome; never an
unexpected exception, never an unbounded amount of time or memory.

Two levels. The pure path every inbound message takes (codec, validation and lodging, risk,
duties, the decision's step) is driven by hypothesis with arbitrary bytes and with absurd values
that still encode: huge strings, 10,000 goods items, negative and overlong decimals, the first
and last instants a timestamp can hold and beyond. The stage code around it (what does not fit
in one Kafka message, dead letters of what cannot be carried whole) is driven through Faust's
test_context with the worst cases written out, its sends recorded after the size checks.
"""

from __future__ import annotations

import asyncio
import copy
import io
import json
import operator
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from streams.app import message_size
from streams.codec import (
    HEADER_SIZE,
    MAGIC,
    DecodeError,
    catalogue,
    check_event_id,
    schema_fingerprint,
)
from streams.config import ROOT, Settings
from streams.decision import DecisionConfig, Step, step
from streams.duties import AssessmentError, assess_duties
from streams.events import Output, derived_event_id, fit_original
from streams.jsonform import from_json
from streams.lodging import MAX_REPORTED_ERRORS, lodge
from streams.reference import load_reference
from streams.risk import assess_risk
from streams.table_writes import table_write
from streams.topics import STAGES, event_key, topic_name
from streams.validation import validate

SCHEMAS = catalogue(ROOT / "schemas")
REFERENCE = load_reference()
COUNTRY = "FR"
LODGED = "declaration.lodged"
DECLARATION_SCHEMA = SCHEMAS.latest(LODGED).schema
CONFIG = DecisionConfig(timedelta(hours=2), timedelta(days=30), SCHEMAS)
# Faust's default producer_max_request_size, which the stages keep
# (test_the_stage_limit_is_the_one_modelled_here checks it).
MAX_MESSAGE = 1_000_000

RULE_CODES = frozenset(
    {
        *("R010", "R011", "R012", "R020", "R021", "R030", "R031", "R032", "R040", "R041"),
        *("R042", "R050", "R051", "R052", "R060", "R061", "R062", "R063", "R064", "R065"),
        *("R066", "R067", "R068", "R069", "R090"),
    }
)
DECODE_REASONS = frozenset(
    {
        "not-single-object-encoding",
        "unknown-schema",
        "wrong-schema",
        "malformed-body",
        "invalid-event-id",
    }
)
INBOUND = sorted({logical for stage in STAGES.values() for logical in stage.reads})
DECISION_INPUTS = ("cop.risk-result", "cop.goods-presented", "control.result")
OUTSIDE_EVENTS = (*DECISION_INPUTS, "invalidation.requested", "clock.tick")

FIXTURE = json.loads((ROOT / "tests" / "fixtures" / "declaration-valid.json").read_text())
EVENT_ID = "4b9c3f5e-1d2a-4e6b-8c7d-9e0f1a2b3c4d"
AT = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
BASE: dict[str, Any] = from_json(
    DECLARATION_SCHEMA, {"eventId": EVENT_ID, "occurredAt": "2026-04-01T08:00:00Z", **FIXTURE}
)
MRN_OF_FIXTURE = "26FR0000000000A1R4"

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_INSTANT = datetime(1, 1, 1, tzinfo=UTC)
LAST_INSTANT = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
MS = timedelta(milliseconds=1)

# An example of the pure path may lodge 10,000 items and follow them through four stages: it
# must end within seconds even on a loaded CI machine; a hang would blow the deadline.
SLOW = settings(
    max_examples=80,
    deadline=timedelta(seconds=20),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FAST = settings(max_examples=400, deadline=timedelta(seconds=2))


# --- Wire forms -------------------------------------------------------------------------------


def _loosen(node: Any) -> Any:
    if isinstance(node, list):
        return [_loosen(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _loosen(v) for k, v in node.items()}
    if node.get("logicalType") == "decimal":
        node["precision"] = 10_000
    if node.get("logicalType") == "timestamp-millis":
        del node["logicalType"]
    return node


def _lenient(logical: str) -> Any:
    """The latest schema of `logical` as a careless producer might hold it: decimals of any
    length, timestamps as bare longs. The parsing canonical form has neither precision nor
    logical types, so its messages carry the real fingerprint."""
    latest = SCHEMAS.latest(logical)
    parsed = parse_schema(_loosen(json.loads(latest.path.read_text())), _write_hint=False)
    assert schema_fingerprint(parsed) == latest.fingerprint
    return parsed


LENIENT = {logical: _lenient(logical) for logical in INBOUND}


def _millis(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value - EPOCH) // MS
    if isinstance(value, dict):
        return {k: _millis(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_millis(v) for v in value]
    return value


def wire(logical: str, record: dict[str, Any], lenient: bool = False) -> bytes:
    """Single-object encoding of `record`; `lenient` writes what the contract forbids but Avro
    carries (timestamps as longs, overlong decimals)."""
    if not lenient:
        return SCHEMAS.encode(logical, record)
    buffer = io.BytesIO()
    buffer.write(SCHEMAS.latest(logical).header)
    schemaless_writer(buffer, LENIENT[logical], _millis(record))
    return buffer.getvalue()


# --- Absurd values ----------------------------------------------------------------------------

UNICODE = st.characters(codec="utf-8")  # anything a UTF-8 string can hold, controls included


def texts(huge: tuple[int, ...] = (513, 5_000, 300_000)) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(UNICODE, max_size=30),
        st.builds(operator.mul, UNICODE, st.sampled_from(huge)),
    )


def decimals(precision: int, scale: int, overlong: bool = False) -> st.SearchStrategy[Decimal]:
    """Decimals of a decimal(precision, scale), extremes and signs included; with `overlong`,
    also up to 1,000 digits, which Avro carries and the contract does not."""
    top = 10**precision - 1
    unscaled = st.one_of(st.sampled_from([0, 1, -1, top, -top]), st.integers(-top, top))
    if overlong:
        beyond = st.integers(10**precision, 10**1000)
        unscaled = st.one_of(unscaled, beyond, beyond.map(operator.neg))
    # From text, so that no context rounds the value on its way to the test.
    return unscaled.map(lambda u: Decimal(f"{u}E-{scale}"))


INSTANTS = st.one_of(
    st.sampled_from([FIRST_INSTANT, LAST_INSTANT, EPOCH, AT]),
    st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC)
    ).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)),
)
# Milliseconds that a long holds but a datetime does not: before year 1, after year 9999.
BEYOND_INSTANTS = st.one_of(
    st.integers((LAST_INSTANT - EPOCH) // MS + 1, 2**63 - 1),
    st.integers(-(2**63), (FIRST_INSTANT - EPOCH) // MS - 1),
)
INT32 = st.one_of(
    st.sampled_from([-(2**31), -1, 0, 1, 2, 3, 2**31 - 1]), st.integers(-9, 2**31 - 1)
)
EVENT_IDS = st.one_of(st.uuids().map(str), st.uuids().map(str), texts())
EORIS = st.one_of(st.sampled_from(["FR552100554", "BE0123456789", "DE123456789012345"]), texts())


def item_values(lenient: bool) -> dict[str, st.SearchStrategy[Any]]:
    return {
        "sequenceNumber": INT32,
        "commodityCode": st.one_of(st.sampled_from(["8471300000", "9503004100"]), texts()),
        "description": st.one_of(
            st.builds(operator.mul, UNICODE, st.sampled_from([1, 512, 513])), texts()
        ),
        "procedureCode": texts(),
        "countryOfOrigin": st.one_of(st.sampled_from(["CN", "VN", "US"]), texts()),
        "preference": st.one_of(st.sampled_from(["100", "300"]), texts()),
        "netMass": decimals(18, 3, lenient),
        "grossMass": st.one_of(st.none(), decimals(18, 3, lenient)),
        "amountInvoiced": decimals(18, 2, lenient),
    }


@st.composite
def goods_items(draw: st.DrawFn, lenient: bool) -> list[dict[str, Any]]:
    template = dict(draw(st.sampled_from(BASE["goodsItems"])))
    values = item_values(lenient)
    for field in draw(st.sets(st.sampled_from(sorted(values)), max_size=3)):
        template[field] = draw(values[field])
    count = draw(st.sampled_from([0, 1, 2, 999, 1000, 10_000]))
    if count > 2:
        # Thousands of copies of a huge string would test the machine, not the stage.
        template = {k: v[:32] if isinstance(v, str) else v for k, v in template.items()}
    numbered = draw(st.booleans())
    return [
        {**template, "sequenceNumber": index + 1 if numbered else template["sequenceNumber"]}
        for index in range(count)
    ]


@st.composite
def lodgings(draw: st.DrawFn) -> tuple[dict[str, Any], bool]:
    """A lodged declaration, the valid fixture with up to five absurd fields, and whether it
    needs the lenient writer (values the contract forbids but Avro carries)."""
    lenient = draw(st.integers(0, 2)) == 0
    record = copy.deepcopy(BASE)
    record["eventId"] = draw(st.uuids().map(str))
    party = st.fixed_dictionaries({"eori": EORIS, "name": texts()})
    values: dict[str, st.SearchStrategy[Any]] = {
        "eventId": EVENT_IDS,
        "occurredAt": st.one_of(INSTANTS, BEYOND_INSTANTS) if lenient else INSTANTS,
        "lrn": texts(),
        "declarationType": texts(),
        "additionalDeclarationType": st.one_of(st.just("D"), texts()),
        "supervisingOffice": texts(),
        "presentationOffice": st.one_of(st.sampled_from(["DE004712", "FR000730"]), texts()),
        "declarant": party,
        "importer": party,
        "representative": st.one_of(
            st.none(), st.fixed_dictionaries({"eori": EORIS, "status": INT32})
        ),
        "authorisation": st.fixed_dictionaries(
            {"type": st.one_of(st.just("CCL"), texts()), "reference": texts(), "holderEori": EORIS}
        ),
        "currency": st.one_of(st.sampled_from(["EUR", "USD", "JPY"]), texts()),
        "exchangeRate": st.one_of(st.none(), decimals(18, 6, lenient)),
        "totalAmountInvoiced": decimals(18, 2, lenient),
        "goodsItems": goods_items(lenient),
    }
    for field in draw(st.sets(st.sampled_from(sorted(values)), max_size=5)):
        record[field] = draw(values[field])
    if draw(st.booleans()):
        record["goodsItems"] = draw(values["goodsItems"])
    if lenient:
        # At least one value that only the wire can carry.
        breach = draw(st.sampled_from(["occurredAt", "exchangeRate", "netMass", "amountInvoiced"]))
        if breach == "occurredAt":
            record["occurredAt"] = draw(BEYOND_INSTANTS)
        else:
            scale = {"exchangeRate": 6, "netMass": 3, "amountInvoiced": 2}[breach]
            beyond = st.integers(10**18, 10**1000).map(lambda u: Decimal(f"{u}E-{scale}"))
            value = draw(st.one_of(beyond, beyond.map(operator.neg)))
            if breach == "exchangeRate":
                record["exchangeRate"] = value
            elif record["goodsItems"]:
                first, *others = record["goodsItems"]
                record["goodsItems"] = [{**first, breach: value}, *others]
    if draw(st.booleans()):
        # Keep R052 satisfied, so that absurd amounts can reach the assessments.
        total = sum((i["amountInvoiced"] for i in record["goodsItems"]), Decimal("0.00"))
        if lenient or abs(total) < Decimal(10) ** 16:
            record["totalAmountInvoiced"] = total
    return record, lenient


# --- The pure path of a message, as the stages take it ----------------------------------------


@dataclass(frozen=True)
class Ending:
    """What one input became at one stage: exactly one of these."""

    kind: str  # "dead-letter", "rejected", "accepted", "assessed", "decided"
    reason: str = ""


def inbound(logical: str, data: bytes) -> dict[str, Any] | Ending:
    """The record a stage reads from `data`, or the dead letter it makes of it
    (`StageContext.decode`)."""
    if len(data) > MAX_MESSAGE:
        return Ending("dead-letter", "oversized")
    try:
        record = SCHEMAS.decode(logical, data)
        check_event_id(record)
    except DecodeError as error:
        assert error.reason in DECODE_REASONS, error
        assert error.detail
        return Ending("dead-letter", error.reason)
    return record


def carried(outputs: list[Output], state: tuple[str, Any] | None = None) -> list[bytes] | None:
    """The outputs as a stage sends them, or None when one of them or the state the stage
    writes with them exceeds a message (the input then becomes an `output-too-large` dead
    letter and nothing else, `StageContext.emit` and `table_write`)."""
    encoded = [SCHEMAS.encode(o.logical, o.record) for o in outputs]  # must never fail
    sizes = [message_size(o.key, value) for o, value in zip(outputs, encoded, strict=True)]
    if state is not None:
        key, value = state
        write = table_write(None, key, value)
        sizes.append(message_size(write.key_bytes, write.value_bytes))
    return None if any(size > MAX_MESSAGE for size in sizes) else encoded


def _resolves(pointer: str, document: Any) -> bool:
    node = document
    for token in pointer.split("/")[1:]:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        elif isinstance(node, dict) and token in node:
            node = node[token]
        else:
            return False
    return True


def intake(data: bytes, sequence: int = 0) -> tuple[Ending, bytes | None]:
    """The intake's ending for `data`, and the acceptance it sends when it accepts (with the
    MRN of `sequence`)."""
    record = inbound(LODGED, data)
    if isinstance(record, Ending):
        return record, None
    result = lodge(record, None, sequence, 0, REFERENCE, COUNTRY)
    assert result.state is not None
    key = event_key(LODGED, record)
    assert key is not None
    sent = carried(result.outputs, (key.decode(), result.state))
    if sent is None:
        return Ending("dead-letter", "output-too-large"), None
    kinds = [o.logical for o in result.outputs]
    if kinds[0] == "declaration.rejected":
        assert kinds == ["declaration.rejected", "trader.notification"]
        errors = result.outputs[0].record["errors"]
        assert 1 <= len(errors) <= MAX_REPORTED_ERRORS
        assert result.outputs[1].record["errors"] == errors
        assert result.outputs[1].record["messageCode"] == "IE456"
        assert [(e["code"], e["pointer"]) for e in errors] == sorted(
            (e["code"], e["pointer"]) for e in errors
        )
        for error in errors:
            assert error["code"] in RULE_CODES
            assert _resolves(error["pointer"], record), error
            # A message echoes at most a cut of the offending value.
            assert len(error["message"]) <= 600, error
        return Ending("rejected"), None
    assert kinds == ["declaration.accepted", "trader.notification"]
    assert validate(record, REFERENCE, COUNTRY) == []
    return Ending("accepted"), sent[0]


def assessments(accepted: dict[str, Any]) -> dict[str, Ending | dict[str, Any]]:
    """What the risk and duty stages make of an acceptance: their content, or a dead letter."""
    declaration = accepted["declaration"]
    endings: dict[str, Ending | dict[str, Any]] = {}
    for stage, logical, assess in (
        ("risk", "risk.assessed", assess_risk),
        ("duties", "duties.assessed", assess_duties),
    ):
        try:
            content = dict(assess(declaration, REFERENCE))
        except AssessmentError:
            # Documented (docs/decisions.md, Risk and duties): an amount the contract cannot
            # carry stops the assessment, as a processing-error dead letter.
            assert stage == "duties"
            endings[stage] = Ending("dead-letter", "processing-error")
            continue
        record = {
            "eventId": derived_event_id(accepted["eventId"], logical),
            "occurredAt": accepted["occurredAt"],
            "mrn": accepted["mrn"],
            **content,
        }
        out = Output(logical, event_key(logical, record), record)
        if carried([out]) is None:
            endings[stage] = Ending("dead-letter", "output-too-large")
            continue
        # The decision stage reads it back from the wire.
        endings[stage] = SCHEMAS.decode(logical, SCHEMAS.encode(logical, record))
    return endings


class Decision:
    """The decision stage's handling of one MRN: `handle` mirrors the stage's agent."""

    def __init__(self) -> None:
        self.state: dict[str, Any] | None = None
        self.terminal: list[str] = []

    def handle(self, logical: str, data: bytes, key: bytes | None) -> Ending:
        record = inbound(logical, data)
        if isinstance(record, Ending):
            return record
        if logical != "clock.tick" and key != record["mrn"].encode():
            return Ending("dead-letter", "key-mismatch")
        if (
            logical != "clock.tick"
            and self.state is not None
            and (record["mrn"] != self.state["mrn"])
        ):
            # Another MRN: a state of its own, which this one never accepted.
            result: Step = step(None, logical, record, CONFIG)
        else:
            result = step(self.state, logical, record, CONFIG)
        if result.unknown_mrn:
            assert not result.outputs
            return Ending("dead-letter", "unknown-mrn")
        if result.state is None:
            assert not result.outputs
            return Ending("decided", "nothing")
        state = {**result.state, "partition": 0}
        json.loads(table_write(None, state["mrn"], state).value_bytes)
        if carried(result.outputs, (state["mrn"], state)) is None:
            return Ending("dead-letter", "output-too-large")
        if logical != "clock.tick" and record["mrn"] != (self.state or state)["mrn"]:
            return Ending("decided", "other mrn")
        self.state = state
        self.terminal += [
            o.logical
            for o in result.outputs
            if o.logical
            in ("declaration.released", "declaration.not-released", "declaration.invalidated")
        ]
        assert len(self.terminal) <= 1, self.terminal  # spec §9: at most one terminal outcome
        return Ending("decided")


def follow(accepted_wire: bytes) -> list[Ending]:
    """An acceptance through risk, duties and the decision, then a COP answer and a tick at
    the last instant a timestamp holds."""
    accepted = SCHEMAS.decode("declaration.accepted", accepted_wire)
    endings: list[Ending] = []
    decision = Decision()
    mrn = accepted["mrn"].encode()
    endings.append(decision.handle("declaration.accepted", accepted_wire, mrn))
    for stage, content in assessments(accepted).items():
        if isinstance(content, Ending):
            endings.append(content)
            continue
        endings.append(Ending("assessed", stage))
        logical = f"{stage}.assessed"
        endings.append(decision.handle(logical, SCHEMAS.encode(logical, content), mrn))
    answer = {"eventId": EVENT_ID, "occurredAt": AT, "mrn": accepted["mrn"], "control": "NONE"}
    endings.append(decision.handle("cop.risk-result", wire("cop.risk-result", answer), mrn))
    tick = {"eventId": EVENT_ID.replace("4b9c", "5b9c"), "occurredAt": LAST_INSTANT}
    endings.append(decision.handle("clock.tick", wire("clock.tick", tick), None))
    return endings


# --- Properties of the pure path --------------------------------------------------------------


def _bad_bytes() -> st.SearchStrategy[tuple[str, bytes]]:
    """Bytes for an inbound topic: random, truncated, with a wrong or unknown fingerprint, with
    length prefixes far past the end."""
    samples = {
        logical: wire(
            logical,
            {
                "eventId": EVENT_ID,
                "occurredAt": AT,
                "mrn": MRN_OF_FIXTURE,
                "control": "PHYSICAL",
                "result": "B1",
                "officeRole": "COP",
                "reason": "r",
                "location": "l",
                "lrn": "L",
                "declarantEori": "FR552100554",
                "declaration": BASE,
                "matchedProfiles": ["RP"],
                "randomlySelected": True,
                "vatMemberState": "NL",
                "items": [],
                "totalDuty": Decimal("1.00"),
                "totalVat": Decimal("2.00"),
                **BASE,
            },
        )
        for logical in INBOUND
    }
    any_header = st.sampled_from([v.header for v in SCHEMAS])
    body_of = st.sampled_from(sorted(samples)).map(lambda lg: samples[lg][HEADER_SIZE:])
    varint = st.integers(1, 2**62).map(_varint)
    return st.tuples(
        st.sampled_from(INBOUND),
        st.one_of(
            st.binary(max_size=256),
            st.builds(operator.add, any_header, st.binary(max_size=256)),
            # A valid body behind another event's header, or an unknown fingerprint.
            st.builds(operator.add, any_header, body_of),
            st.builds(
                lambda fp, body: MAGIC + fp + body, st.binary(min_size=8, max_size=8), body_of
            ),
            st.builds(
                lambda lg, n: samples[lg][: max(0, len(samples[lg]) - n)],
                st.sampled_from(sorted(samples)),
                st.integers(1, 2000),
            ),
            # Huge length or count prefixes where a string, bytes or array starts.
            st.builds(
                lambda lg, cut, v: samples[lg][: HEADER_SIZE + cut] + v,
                st.sampled_from(sorted(samples)),
                st.integers(0, 80),
                varint,
            ),
            st.builds(
                lambda lg, v, n: samples[lg] + v * n,
                st.sampled_from(sorted(samples)),
                varint,
                st.integers(1, 3),
            ),
        ),
    )


def _varint(n: int) -> bytes:
    zigzag = (n << 1) ^ (n >> 63)
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


@FAST
@given(_bad_bytes())
def test_arbitrary_bytes_on_any_inbound_topic_decode_or_dead_letter_with_a_reason(
    case: tuple[str, bytes],
) -> None:
    logical, data = case
    began = time.perf_counter()
    ending = inbound(logical, data)
    if isinstance(ending, Ending):
        assert ending.kind == "dead-letter"
        event(ending.reason)
    else:
        assert isinstance(ending, dict) and "eventId" in ending
    assert time.perf_counter() - began < 1.0


@SLOW
@given(lodgings())
def test_every_lodged_message_ends_as_one_dead_letter_rejection_or_acceptance(
    case: tuple[dict[str, Any], bool],
) -> None:
    record, lenient = case
    data = wire(LODGED, record, lenient)
    ending, accepted = intake(data)
    assert ending.kind in ("dead-letter", "rejected", "accepted")
    event(f"intake: {ending.kind} {ending.reason}".strip())
    event(f"goods items: {len(record['goodsItems'])}")
    if accepted is not None:
        for downstream in follow(accepted):
            assert downstream.kind in ("dead-letter", "assessed", "decided"), downstream
            event(f"downstream: {downstream.kind} {downstream.reason}".strip())


@settings(max_examples=150, deadline=timedelta(seconds=10))
@given(
    st.lists(
        st.tuples(
            st.sampled_from(OUTSIDE_EVENTS),
            st.fixed_dictionaries(
                {
                    "eventId": EVENT_IDS,
                    "occurredAt": INSTANTS,
                    "mrn": st.one_of(st.just("accepted"), texts()),
                    "control": st.sampled_from(["NONE", "DOCUMENTARY", "PHYSICAL"]),
                    "result": st.sampled_from(["A1", "B1"]),
                    "officeRole": st.sampled_from(["SCO", "COP"]),
                    "location": texts(),
                    "reason": texts(huge=(513, 5_000, 999_000)),
                }
            ),
            st.sampled_from(["right", "none", "other"]),
        ),
        max_size=6,
    ),
    st.sampled_from(["A", "D"]),
)
def test_outside_events_for_a_declaration_end_as_one_dead_letter_or_decision(
    events: list[tuple[str, dict[str, Any], str]], kind: str
) -> None:
    record = {**copy.deepcopy(BASE), "additionalDeclarationType": kind}
    ending, accepted_wire = intake(wire(LODGED, record))
    assert ending == Ending("accepted") and accepted_wire is not None
    accepted = SCHEMAS.decode("declaration.accepted", accepted_wire)
    mrn = accepted["mrn"]
    decision = Decision()
    assert decision.handle("declaration.accepted", accepted_wire, mrn.encode()).kind == "decided"
    for logical, fields, keyed in events:
        if fields["mrn"] == "accepted":
            fields = {**fields, "mrn": mrn}
        key = {"right": fields["mrn"].encode(), "none": None, "other": b"26FR0000000000Z9R0"}[keyed]
        ending = decision.handle(logical, wire(logical, fields), key)
        assert ending.kind in ("dead-letter", "decided"), ending
        event(f"{logical}: {ending.kind} {ending.reason}".strip())


@st.composite
def absurd_but_valid(draw: st.DrawFn) -> dict[str, Any]:
    """Declarations that pass every rule: extreme instants, huge names (no rule bounds them),
    512-character descriptions of any script, the largest amounts and rates the contract
    holds, 999 items."""
    record = copy.deepcopy(BASE)
    count = draw(st.sampled_from([1, 2, 999]))
    # Cents per item such that the total still fits decimal(18,2) (R052 wants the exact sum).
    amount = Decimal(f"{draw(st.integers(0, (10**18 - 1) // count))}E-2")
    template = {**record["goodsItems"][0], "amountInvoiced": amount}
    template["description"] = draw(st.builds(operator.mul, UNICODE, st.sampled_from([1, 512])))
    record["goodsItems"] = [{**template, "sequenceNumber": n + 1} for n in range(count)]
    record["totalAmountInvoiced"] = amount * count
    rate = draw(st.one_of(st.sampled_from([1, 10**18 - 1]), st.integers(1, 10**18 - 1)))
    record.update(occurredAt=draw(INSTANTS), exchangeRate=Decimal(f"{rate}E-6"))
    name = draw(texts(huge=(513, 100_000, 170_000)))
    record["declarant"] = {**record["declarant"], "name": name}
    return record


@SLOW
@given(absurd_but_valid())
def test_absurd_but_valid_declarations_are_accepted_and_followed_to_one_ending_per_stage(
    record: dict[str, Any],
) -> None:
    """Each stage still ends each input one way, whatever the sizes."""
    ending, accepted = intake(wire(LODGED, record))
    event(f"intake: {ending.kind} {ending.reason}".strip())
    if ending.kind == "dead-letter":
        # Over a message as lodged, or once the acceptance wraps the whole declaration.
        assert ending.reason in ("oversized", "output-too-large")
        return
    assert ending == Ending("accepted") and accepted is not None
    for downstream in follow(accepted):
        assert downstream.kind in ("dead-letter", "assessed", "decided"), downstream
        event(f"downstream: {downstream.kind} {downstream.reason}".strip())


# --- Named worst cases of the pure path ------------------------------------------------------


def _lodged(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(BASE), **changes}


def _items(count: int, **changes: Any) -> list[dict[str, Any]]:
    template = {**BASE["goodsItems"][0], **changes}
    return [{**template, "sequenceNumber": n + 1} for n in range(count)]


def test_an_overlong_decimal_is_a_malformed_body_not_a_rounded_amount() -> None:
    items = _items(1, amountInvoiced=Decimal(10) ** 40)
    data = wire(LODGED, _lodged(goodsItems=items), lenient=True)
    with pytest.raises(DecodeError) as error:
        SCHEMAS.decode(LODGED, data)
    assert error.value.reason == "malformed-body"
    assert "/goodsItems/0/amountInvoiced" in error.value.detail
    assert "decimal(18,2)" in error.value.detail


@pytest.mark.parametrize(
    "amount",
    [Decimal("9999999999999999.99"), Decimal("-9999999999999999.99"), Decimal("0.00")],
)
def test_the_extreme_amounts_of_the_contract_still_decode(amount: Decimal) -> None:
    record = _lodged(goodsItems=_items(1, amountInvoiced=amount), totalAmountInvoiced=amount)
    assert SCHEMAS.decode(LODGED, wire(LODGED, record))["totalAmountInvoiced"] == amount


@pytest.mark.parametrize("millis", [-(2**63), 2**63 - 1, 253402300800000])
def test_a_timestamp_past_year_9999_or_before_year_1_is_a_malformed_body(millis: int) -> None:
    with pytest.raises(DecodeError) as error:
        SCHEMAS.decode(LODGED, wire(LODGED, _lodged(occurredAt=millis), lenient=True))
    assert error.value.reason == "malformed-body"


@pytest.mark.parametrize(
    "event_id", ["", "not-a-uuid", "x" * 300_000, "-" * 1000 + "0" * 32, EVENT_ID + "\n"]
)
def test_an_event_id_that_is_not_a_uuid_is_refused(event_id: str) -> None:
    ending = inbound(LODGED, wire(LODGED, _lodged(eventId=event_id)))
    assert ending == Ending("dead-letter", "invalid-event-id")


def test_ten_thousand_bad_items_give_one_rejection_of_the_first_999_errors_in_bounded_time() -> (
    None
):
    items = _items(10_000, commodityCode="", procedureCode="", countryOfOrigin="", preference="")
    record = _lodged(goodsItems=items, totalAmountInvoiced=Decimal("1.00"))
    began = time.perf_counter()
    result = lodge(record, None, 0, 0, REFERENCE, COUNTRY)
    elapsed = time.perf_counter() - began
    rejected = result.outputs[0].record
    errors = [(e["code"], e["pointer"]) for e in rejected["errors"]]
    assert len(errors) == MAX_REPORTED_ERRORS
    everything = validate(record, REFERENCE, COUNTRY)
    assert len(everything) > 50_000
    assert errors == [(e.code, e.pointer) for e in everything[:MAX_REPORTED_ERRORS]]
    assert errors[:2] == [("R052", "/totalAmountInvoiced"), ("R060", "/goodsItems")]
    assert carried(result.outputs) is not None
    assert elapsed < 30, f"{elapsed:.1f}s"


def test_the_largest_rejection_fits_in_one_message() -> None:
    """999 items failing every item rule with the longest echo (40 characters, escaped)."""
    odd = "\U0010ffff" * 600
    items = _items(
        999,
        commodityCode=odd,
        procedureCode=odd,
        countryOfOrigin=odd,
        preference=odd,
        description="",
        netMass=Decimal("-1.000"),
        grossMass=Decimal("-2.000"),
        amountInvoiced=Decimal("-1.00"),
    )
    items = [{**item, "sequenceNumber": 0} for item in items]
    result = lodge(_lodged(goodsItems=items), None, 0, 0, REFERENCE, COUNTRY)
    assert len(result.outputs[0].record["errors"]) == MAX_REPORTED_ERRORS
    encoded = carried(result.outputs)
    assert encoded is not None
    assert max(len(e) for e in encoded) < MAX_MESSAGE // 2


def test_an_accepted_declaration_too_big_for_the_decision_state_is_one_dead_letter() -> None:
    """A name of 400,000 two-byte characters: 800 kB of Avro, which the intake accepts, but the
    decision stage keeps the declaration in base64 until it is forwarded, 1.07 MB: too big for
    its changelog, so the acceptance is refused whole there."""
    record = _lodged(declarant={"eori": "FR552100554", "name": "é" * 400_000})
    ending, accepted = intake(wire(LODGED, record))
    assert ending == Ending("accepted") and accepted is not None
    decision = Decision()
    mrn = SCHEMAS.decode("declaration.accepted", accepted)["mrn"].encode()
    assert decision.handle("declaration.accepted", accepted, mrn) == Ending(
        "dead-letter", "output-too-large"
    )
    assert decision.state is None


def test_half_the_largest_declaration_is_kept_by_the_decision_state() -> None:
    """200,000 two-byte characters: 1.2 MB in the JSON form the state once kept, which refused
    it; its Avro form fits, and so does its forward to the COP."""
    record = _lodged(declarant={"eori": "FR552100554", "name": "é" * 200_000})
    ending, accepted = intake(wire(LODGED, record))
    assert ending == Ending("accepted") and accepted is not None
    endings = follow(accepted)
    assert not [e for e in endings if e.kind == "dead-letter"], endings
    assert endings[0] == Ending("decided")


def test_an_input_at_the_size_limit_keeps_its_beginning_its_size_and_its_hash() -> None:
    value = bytes(range(256)) * 4000  # 1,024,000 bytes
    key, kept, headers, note = fit_original(b"k" * 5000, value, [("h", b"v" * 5000)], 900_000)
    assert key == b"k" * 1024 and headers == [("h", b"v" * 1024)]
    assert kept is not None and value.startswith(kept) and len(kept) > 800_000
    assert note is not None and "1024000 bytes" in note and "SHA-256" in note
    whole = fit_original(b"k", b"v" * 1000, [("h", None)], 900_000)
    assert whole == (b"k", b"v" * 1000, [("h", None)], None)


# --- The stages themselves, through Faust's test_context ---------------------------------------


@dataclass
class Sent:
    logical: str
    key: bytes | None
    value: bytes
    headers: Any

    @property
    def record(self) -> dict[str, Any]:
        return SCHEMAS.decode_any(self.value)[1]


class _Recorder:
    """Stands for an output topic: what `StageContext.emit` sends, after its checks."""

    def __init__(self, logical: str, sent: list[Sent]) -> None:
        self.logical = logical
        self.sent = sent

    async def send(self, *, key: bytes | None, value: bytes, headers: Any = None) -> None:
        assert message_size(key, value, headers) <= MAX_MESSAGE
        self.sent.append(Sent(self.logical, key, value, headers))


Message = tuple[str, bytes | None, bytes]


def run_stage(stage: str, messages: list[Message], state_dir: Path) -> list[Sent]:
    """Feed (logical topic, key, value) messages to a fresh stage on partition 0."""
    from streams.app import make_app, make_context
    from streams.stages import BUILDERS

    current = Settings(namespace="unit", store="memory://", state_dir=state_dir, partitions=1)
    app = make_app(stage, current)
    app.finalize()
    app.flow_control.resume()
    ctx = make_context(stage, current, app)
    assert ctx.max_message_size == MAX_MESSAGE
    sent: list[Sent] = []
    ctx.topics = {logical: _Recorder(logical, sent) for logical in ctx.topics}
    agent = BUILDERS[stage](ctx)

    async def drive() -> None:
        async with agent.test_context() as test_agent:
            build = test_agent.to_message
            topic = ""

            def on_topic(*args: Any, **kwargs: Any) -> Any:
                built = build(*args, **kwargs)
                built.topic = topic  # a group of topics: say which one, as Kafka would
                return built

            test_agent.to_message = on_topic
            for on, key, value in messages:
                topic = topic_name("unit", on)
                await test_agent.put(value, key=key, partition=0, headers=[("origin", b"gw")])

    asyncio.run(drive())
    return sent


def _by_offset(sent: list[Sent]) -> Iterator[tuple[str, Sent]]:
    for message in sent:
        if message.logical == "dead-letter":
            yield f"dead-letter/{message.record['reason']}", message
        else:
            yield message.logical, message


def _lodged_message(record: dict[str, Any], lenient: bool = False) -> Message:
    return LODGED, event_key(LODGED, record), wire(LODGED, record, lenient)


def test_the_stage_limit_is_the_one_modelled_here(tmp_path: Path) -> None:
    assert run_stage("intake", [], tmp_path) == []  # run_stage checks max_message_size


def test_the_intake_ends_each_hostile_message_one_way_and_keeps_going(tmp_path: Path) -> None:
    garbage = bytes(range(256)) * 3900  # 998,400 bytes: fits as an input, not in a dead letter
    oversized = MAGIC + b"\x00" * 1_100_000  # what a compressed batch can carry
    huge_lrn = _lodged(lrn="L" * 600_000)  # its rejection and IE456 repeat it: too big
    valid = _lodged(eventId="6b9c3f5e-1d2a-4e6b-8c7d-9e0f1a2b3c4d")
    messages: list[Message] = [
        (LODGED, b"junk", garbage),
        (LODGED, None, oversized),
        _lodged_message(_lodged(eventId="x" * 1000)),
        _lodged_message(_lodged(totalAmountInvoiced=Decimal(10) ** 30), lenient=True),
        _lodged_message(_lodged(goodsItems=_items(10_000, commodityCode=""))),
        _lodged_message(huge_lrn),
        _lodged_message(valid),
    ]
    sent = run_stage("intake", messages, tmp_path)

    kinds = [kind for kind, _ in _by_offset(sent)]
    assert kinds == [
        "dead-letter/not-single-object-encoding",
        "dead-letter/oversized",
        "dead-letter/invalid-event-id",
        "dead-letter/malformed-body",
        "declaration.rejected",
        "trader.notification",
        "dead-letter/output-too-large",
        "declaration.accepted",
        "trader.notification",
    ]
    dead = [m.record for m in sent if m.logical == "dead-letter"]
    assert [d["sourceOffset"] for d in dead] == [0, 1, 2, 3, 5]
    assert all(d["stage"] == "intake" and d["error"] for d in dead)
    cut_garbage, cut_oversized = dead[0], dead[1]
    assert cut_garbage["key"] == b"junk" and garbage.startswith(cut_garbage["value"])
    assert cut_garbage["error"].startswith("original too big to keep whole, cut")
    assert "998400 bytes" in cut_garbage["error"]
    assert (
        oversized.startswith(cut_oversized["value"]) and "1100002 bytes" in cut_oversized["error"]
    )
    assert {"key": "origin", "value": b"gw"} in dead[2]["headers"]
    assert dead[2]["value"] == messages[2][2]  # small enough: kept whole
    rejection = sent[4].record
    assert len(rejection["errors"]) == MAX_REPORTED_ERRORS
    assert [e["code"] for e in rejection["errors"][:3]] == ["R052", "R060", "R062"]


def test_the_decision_stage_ends_each_hostile_event_one_way_and_keeps_going(
    tmp_path: Path,
) -> None:
    _, accepted = intake(wire(LODGED, _lodged()))
    assert accepted is not None
    mrn = SCHEMAS.decode("declaration.accepted", accepted)["mrn"]

    def event(logical: str, n: int, **fields: Any) -> Message:
        record = {"eventId": f"{n:08d}-1d2a-4e6b-8c7d-9e0f1a2b3c4d", "occurredAt": AT, **fields}
        key = event_key(logical, record)
        return logical, key, wire(logical, record)

    big_name = _lodged(declarant={"eori": "FR552100554", "name": "é" * 400_000})
    _, too_big_state = intake(wire(LODGED, big_name), sequence=1)
    assert too_big_state is not None
    big_mrn = SCHEMAS.decode("declaration.accepted", too_big_state)["mrn"]
    messages: list[Message] = [
        ("declaration.accepted", mrn.encode(), accepted),
        event("invalidation.requested", 1, mrn=mrn, reason="r" * 999_000),
        event("cop.risk-result", 2, mrn="M" * 600_000, control="NONE"),
        ("cop.goods-presented", mrn.encode(), MAGIC + b"\xff" * 990_000),
        event("clock.tick", 3, occurredAt=LAST_INSTANT),
        ("declaration.accepted", big_mrn.encode(), too_big_state),
        event("invalidation.requested", 4, mrn=mrn, reason="lodged twice"),
    ]
    sent = run_stage("decision", messages, tmp_path)

    kinds = [kind for kind, _ in _by_offset(sent)]
    assert kinds == [
        "declaration.status",  # ACCEPTED
        # A reason of 999,000 characters: the output is as big as the input, and fits.
        "declaration.invalidated",
        "trader.notification",
        "declaration.status",
        "dead-letter/unknown-mrn",
        "dead-letter/unknown-schema",
        "dead-letter/output-too-large",
        "trader.notification",  # IE456 R095: already invalidated
    ]
    assert len(sent[1].record["reason"]) == 999_000
    assert sent[-1].record["errors"][0]["code"] == "R095"
    dead = [m.record for m in sent if m.logical == "dead-letter"]
    assert [d["sourceOffset"] for d in dead] == [2, 3, 5]
    assert all(d["stage"] == "decision" and d["error"] for d in dead)
    assert dead[0]["key"] == b"M" * 1024 and "cut" in dead[0]["error"]
    assert dead[1]["value"] == messages[3][2][: len(dead[1]["value"])]
    assert "990002 bytes" in dead[1]["error"]
