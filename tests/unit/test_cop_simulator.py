"""The simulated COP and officers: deterministic answers, shares respected, records that are
valid events, and the compact mix syntax of the command line."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from streams.codec import catalogue
from streams.config import ROOT
from streams.cop_simulator import (
    CONTROL_RESULT,
    GOODS_PRESENTED,
    RISK_RESULT,
    UNDECODABLE,
    Answer,
    Mix,
    _answers,
    answer_forward,
    answer_status,
    next_batch,
    parse_mix,
)
from streams.jsonform import from_json

SCHEMAS = catalogue(ROOT / "schemas")
FIXTURES = ROOT / "tests" / "fixtures"
AT = datetime(2026, 4, 1, 8, 20, tzinfo=UTC)
MRNS = [f"26FR{i:012X}R{i % 10}" for i in range(2000)]
STATES = [
    "ACCEPTED",
    "RISK_ASSESSED",
    "FORWARDED",
    "UNDER_CONTROL",
    "RELEASED",
    "NOT_RELEASED",
    "INVALIDATED",
]


def forward(mrn: str, kind: str = "A", at: datetime = AT) -> dict[str, Any]:
    """The fields of a `cop.forwarded` record that the simulator reads."""
    return {
        "eventId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"forward/{mrn}")),
        "occurredAt": at,
        "mrn": mrn,
        "presentationOffice": "DE004712",
        "declaration": {"additionalDeclarationType": kind},
    }


def status(mrn: str, *states: str, at: datetime = AT, event: str = "1") -> dict[str, Any]:
    """A `declaration.status` whose history holds `states` one minute apart, the last current."""
    history = [{"state": s, "occurredAt": at + timedelta(minutes=i)} for i, s in enumerate(states)]
    return {
        "eventId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"status/{mrn}/{event}")),
        "occurredAt": history[-1]["occurredAt"],
        "mrn": mrn,
        "lrn": "LRN-1",
        "state": states[-1],
        "history": history,
    }


def kinds(answers: list[Answer]) -> list[str]:
    return [logical for logical, _ in answers]


# --- determinism ---------------------------------------------------------------------------


def test_the_same_forward_gets_the_same_answers_event_ids_included() -> None:
    mix = Mix(silence=0.3, cop_documentary=0.3, cop_physical=0.3, not_presented=0.5, seed=4)
    for mrn in MRNS[:200]:
        f = forward(mrn, "D")
        assert answer_forward(f, mix) == answer_forward(dict(f), Mix(**vars(mix)))


def test_answers_do_not_depend_on_the_order_of_consumption() -> None:
    mix = Mix(silence=0.2, cop_physical=0.2, b1=0.5)
    inputs = [forward(m, "D") for m in MRNS[:300]]
    forwards = {f["mrn"]: answer_forward(f, mix) for f in inputs}
    backwards = {f["mrn"]: answer_forward(f, mix) for f in reversed(inputs)}
    assert forwards == backwards


def test_another_seed_gives_other_event_ids_and_draws() -> None:
    f = forward(MRNS[0], "D")
    ids = {r["eventId"] for _, r in answer_forward(f, Mix(seed=1))}
    assert ids.isdisjoint({r["eventId"] for _, r in answer_forward(f, Mix(seed=2))})
    controls = [
        [a[1]["control"] for a in answer_forward(forward(m), Mix(cop_physical=0.5, seed=s))]
        for s in (1, 2)
        for m in MRNS[:100]
    ]
    assert controls[:100] != controls[100:]


def test_event_ids_are_uuids_distinct_per_answer() -> None:
    answers = answer_forward(forward(MRNS[0], "D"), Mix())
    ids = [uuid.UUID(r["eventId"]) for _, r in answers]
    assert [i.version for i in ids] == [5, 5] and len(set(ids)) == 2


# --- shares --------------------------------------------------------------------------------


def test_silence_share_is_respected() -> None:
    mix = Mix(silence=0.1)
    silent = sum(RISK_RESULT not in kinds(answer_forward(forward(m), mix)) for m in MRNS)
    assert 150 <= silent <= 250


def test_cop_control_shares_are_respected() -> None:
    mix = Mix(silence=0.1, cop_documentary=0.2, cop_physical=0.1)
    controls: Counter[str | None] = Counter()
    for m in MRNS:
        results = [r["control"] for k, r in answer_forward(forward(m), mix) if k == RISK_RESULT]
        controls[results[0] if results else None] += 1
    assert 150 <= controls[None] <= 250
    assert 330 <= controls["DOCUMENTARY"] <= 470
    assert 150 <= controls["PHYSICAL"] <= 250
    assert 1050 <= controls["NONE"] <= 1350


def test_no_shares_means_every_cop_answers_none() -> None:
    for m in MRNS[:200]:
        assert [r["control"] for _, r in answer_forward(forward(m), Mix())] == ["NONE"]


def test_type_a_is_never_presented_again() -> None:
    for m in MRNS:
        assert GOODS_PRESENTED not in kinds(answer_forward(forward(m, "A"), Mix()))


def test_not_presented_share_of_type_d() -> None:
    mix = Mix(not_presented=0.3)
    presented = [GOODS_PRESENTED in kinds(answer_forward(forward(m, "D"), mix)) for m in MRNS]
    assert 500 <= presented.count(False) <= 700


def test_presentation_and_cop_answer_draw_independently() -> None:
    # A silent COP still sees the goods arrive; unpresented goods still get a risk result.
    assert all(
        kinds(answer_forward(forward(m, "D"), Mix(silence=1.0))) == [GOODS_PRESENTED]
        for m in MRNS[:100]
    )
    assert all(
        kinds(answer_forward(forward(m, "D"), Mix(not_presented=1.0))) == [RISK_RESULT]
        for m in MRNS[:100]
    )
    both = Mix(silence=0.5, not_presented=0.5)
    pairs = Counter(tuple(kinds(answer_forward(forward(m, "D"), both))) for m in MRNS)
    assert all(400 <= pairs[k] <= 600 for k in [(), (GOODS_PRESENTED,), (RISK_RESULT,)])


def test_b1_share_is_respected() -> None:
    mix = Mix(b1=0.2)
    results = Counter(
        r["result"] for m in MRNS for _, r in answer_status(status(m, "UNDER_CONTROL"), mix)
    )
    assert 300 <= results["B1"] <= 500 and results["A1"] == 2000 - results["B1"]


# --- answer contents -----------------------------------------------------------------------


def test_forward_answers_occur_delay_after_the_forward() -> None:
    mix = Mix(delay=timedelta(minutes=10))
    answers = answer_forward(forward(MRNS[0], "D"), mix)
    assert [k for k, _ in answers] == [GOODS_PRESENTED, RISK_RESULT]
    assert [r["occurredAt"] for _, r in answers] == [AT + timedelta(minutes=10)] * 2
    assert answers[0][1]["location"] == "DE004712"
    assert {r["mrn"] for _, r in answers} == {MRNS[0]}


def test_control_result_occurs_delay_after_entering_under_control() -> None:
    answers = answer_status(status(MRNS[0], "ACCEPTED", "FORWARDED", "UNDER_CONTROL"), Mix())
    assert answers == [
        (
            CONTROL_RESULT,
            {
                "eventId": answers[0][1]["eventId"],
                "occurredAt": AT + timedelta(minutes=2) + timedelta(minutes=5),
                "mrn": MRNS[0],
                "result": "A1",
                "officeRole": "COP",
            },
        )
    ]


@pytest.mark.parametrize("state", [s for s in STATES if s != "UNDER_CONTROL"])
def test_only_under_control_gets_a_control_result(state: str) -> None:
    assert answer_status(status(MRNS[0], "ACCEPTED", "UNDER_CONTROL", state), Mix()) == []


def test_every_status_of_one_stay_under_control_gets_the_same_answer() -> None:
    first = status(MRNS[0], "FORWARDED", "UNDER_CONTROL", event="1")
    republished = status(MRNS[0], "FORWARDED", "UNDER_CONTROL", "UNDER_CONTROL", event="2")
    assert first["eventId"] != republished["eventId"]
    assert answer_status(first, Mix()) == answer_status(republished, Mix())


def test_a_new_stay_under_control_gets_a_new_answer() -> None:
    first = answer_status(status(MRNS[0], "UNDER_CONTROL"), Mix())
    again = answer_status(status(MRNS[0], "UNDER_CONTROL", "FORWARDED", "UNDER_CONTROL"), Mix())
    assert first[0][1]["eventId"] != again[0][1]["eventId"]
    assert again[0][1]["occurredAt"] == AT + timedelta(minutes=2 + 5)


def test_every_answer_is_a_valid_event() -> None:
    mix = Mix(silence=0.2, cop_documentary=0.3, cop_physical=0.3, b1=0.5)
    answers = [a for m in MRNS[:100] for a in answer_forward(forward(m, "D"), mix)]
    answers += [
        a for m in MRNS[:100] for a in answer_status(status(m, "FORWARDED", "UNDER_CONTROL"), mix)
    ]
    assert set(kinds(answers)) == {GOODS_PRESENTED, RISK_RESULT, CONTROL_RESULT}
    for logical, record in answers:
        assert SCHEMAS.decode(logical, SCHEMAS.encode(logical, record)) == record


def test_the_status_records_of_these_tests_are_valid_events() -> None:
    record = status(MRNS[0], "ACCEPTED", "UNDER_CONTROL")
    assert SCHEMAS.decode("declaration.status", SCHEMAS.encode("declaration.status", record))


# --- decoding in the consumer loop ---------------------------------------------------------


class FakeMessage:
    def __init__(self, topic: str, value: bytes | None) -> None:
        self._topic, self._value = topic, value

    def topic(self) -> str:
        return self._topic

    def value(self) -> bytes | None:
        return self._value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 7


def test_loop_answers_real_records_and_skips_undecodable_ones() -> None:
    declaration = json.loads((FIXTURES / "declaration-valid.json").read_text())
    declaration |= {"eventId": str(uuid.uuid4()), "occurredAt": "2026-04-01T08:00:00Z"}
    forwarded = from_json(
        SCHEMAS.latest("cop.forwarded").schema,
        {
            "eventId": str(uuid.uuid4()),
            "occurredAt": "2026-04-01T08:20:00Z",
            "mrn": MRNS[0],
            "presentationOffice": "NL000396",
            "instruction": "RELEASE_ALLOWED",
            "control": "NONE",
            "totalDuty": "0.00",
            "totalVat": "0.00",
            "vatMemberState": "NL",
            "declaration": declaration,
        },
    )
    sources = {"t.forwarded": "cop.forwarded", "t.status": "declaration.status"}
    counts: Counter[str] = Counter()
    messages = [
        FakeMessage("t.forwarded", SCHEMAS.encode("cop.forwarded", forwarded)),
        FakeMessage("t.forwarded", b"not avro"),
        FakeMessage("t.status", SCHEMAS.encode("cop.forwarded", forwarded)),  # wrong schema
        FakeMessage("t.status", None),  # tombstone of the compacted topic
        FakeMessage(
            "t.status",
            SCHEMAS.encode("declaration.status", status(MRNS[1], "FORWARDED", "UNDER_CONTROL")),
        ),
    ]
    answers = _answers(messages, sources, SCHEMAS, Mix(), counts)
    assert kinds(answers) == [RISK_RESULT, CONTROL_RESULT]
    assert answers[0][1]["occurredAt"] == datetime(2026, 4, 1, 8, 25, tzinfo=UTC)
    assert counts == Counter({UNDECODABLE: 2})


# --- the mix -------------------------------------------------------------------------------


def test_parse_mix_reads_every_key() -> None:
    mix = parse_mix(
        "silence=0.05, physical=0.02,documentary=0.05,not-presented=0.1,b1=0.2,delay=PT10M,seed=7"
    )
    assert mix == Mix(
        silence=0.05,
        cop_physical=0.02,
        cop_documentary=0.05,
        not_presented=0.1,
        b1=0.2,
        delay=timedelta(minutes=10),
        seed=7,
    )


def test_parse_mix_accepts_field_names_and_an_empty_mix() -> None:
    assert parse_mix("cop-physical=0.1,not_presented=0.2,COP_DOCUMENTARY=0.3") == Mix(
        cop_physical=0.1, not_presented=0.2, cop_documentary=0.3
    )
    assert parse_mix("") == parse_mix("  ") == Mix()


def test_shares_summing_to_one_in_decimal_are_accepted() -> None:
    assert parse_mix("silence=0.1,documentary=0.2,physical=0.7").cop_physical == 0.7


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo=0.1", "unknown mix key 'foo'"),
        ("silence=abc", "silence 'abc' is not a number"),
        ("silence=1.5", "silence must be a share between 0 and 1"),
        ("b1=-0.1", "b1 must be a share between 0 and 1"),
        ("b1=nan", "b1 must be a share between 0 and 1"),
        ("silence=0.6,documentary=0.5", "must not exceed 1"),
        ("silence", "is not key=value"),
        ("silence=0.1,,b1=0.1", "is not key=value"),
        ("silence=0.1,silence=0.2", "given twice"),
        ("delay=5m", "not an ISO 8601 duration"),
        ("delay=-PT1M", "delay must be a duration of 0 or more"),
        ("seed=x", "seed 'x' is not an integer"),
    ],
)
def test_parse_mix_refuses_bad_input_in_one_line(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_mix(text)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_delay_finer_than_a_millisecond_is_refused() -> None:
    with pytest.raises(ValueError, match="whole number of milliseconds"):
        Mix(delay=timedelta(microseconds=1500))


class QueuedConsumer:
    """A consumer whose fetched messages are a list; it records how long each call was allowed
    to wait."""

    def __init__(self, queued: list[str]) -> None:
        self.queued = queued
        self.waits: list[tuple[str, float]] = []

    def poll(self, timeout: float) -> str | None:
        self.waits.append(("poll", timeout))
        return self.queued.pop(0) if self.queued else None

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.waits.append(("consume", timeout))
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def test_a_batch_returns_what_was_fetched_without_waiting_for_a_full_one() -> None:
    consumer = QueuedConsumer(["a", "b", "c"])
    assert next_batch(consumer, 500, timeout=0.5) == ["a", "b", "c"]
    # Only the wait for the first message may be long: the rest is taken as it is.
    assert consumer.waits == [("poll", 0.5), ("consume", 0)]


def test_a_batch_is_at_most_its_size_and_empty_when_nothing_comes() -> None:
    consumer = QueuedConsumer(["a", "b", "c"])
    assert next_batch(consumer, 2, timeout=0.5) == ["a", "b"]
    assert next_batch(consumer, 1, timeout=0.5) == ["c"]
    assert next_batch(consumer, 500, timeout=0.5) == []
