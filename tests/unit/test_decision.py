"""The decision of the SCO (spec §8-§10) as a table: state × event → new state + outputs.

Every flow goes through `run`, which checks on every step what must hold whatever the scenario:
each output encodes with its Avro schema and is keyed as §2 says, its `occurredAt` is the one of
the input that caused it, its `eventId` is new in the flow, a step that changes the declaration's
state emits exactly one `declaration.status` (and a step that does not, none) whose history only
grows, and the state survives a JSON round trip (the stage keeps it in a JSON table).
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.codec import catalogue
from streams.config import ROOT
from streams.decision import DecisionConfig, Held, Step, settle, step
from streams.jsonform import from_json, to_json
from streams.topics import event_key

SCHEMAS = catalogue(ROOT / "schemas")
DECLARATION_SCHEMA = SCHEMAS.latest("declaration.lodged").schema
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "declaration-valid.json"
CONFIG = DecisionConfig(timedelta(hours=2), timedelta(days=30), SCHEMAS)

MRN = "26FR0000000000A1R4"
LRN = "ACME-2026-000042"  # the fixture's
EORI = "FR552100554"  # the fixture's declarant
T0 = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
MS = timedelta(milliseconds=1)
H = timedelta(hours=1)
DAY = timedelta(days=1)
TOTAL_DUTY, TOTAL_VAT = Decimal("754.02"), Decimal("2542.11")

# The states a declaration passes through, in the only order they may come (spec §10).
PATH = ("ACCEPTED", "RISK_ASSESSED", "FORWARDED", "UNDER_CONTROL")
TERMINAL = ("RELEASED", "NOT_RELEASED", "INVALIDATED")
CONTROLS = ("NONE", "DOCUMENTARY", "PHYSICAL")  # in increasing order

Input = tuple[str, dict[str, Any]]


# --- inputs, Avro-native ------------------------------------------------------------------------


def _envelope(label: str, offset: timedelta) -> dict[str, Any]:
    """eventId derived from a readable label, so the same call gives the same event."""
    return {"eventId": str(uuid.uuid5(uuid.NAMESPACE_URL, label)), "occurredAt": T0 + offset}


def declaration(kind: str = "A") -> dict[str, Any]:
    raw = json.loads(FIXTURE.read_text())
    lodged = {"eventId": "lodged", "occurredAt": "2026-04-01T07:59:30.125Z", **raw}
    record: dict[str, Any] = from_json(
        DECLARATION_SCHEMA, {**lodged, "additionalDeclarationType": kind}
    )
    return record


def accepted(kind: str = "A", offset: timedelta = timedelta(0), mrn: str = MRN) -> Input:
    return "declaration.accepted", {
        **_envelope(f"accepted/{mrn}/{kind}@{offset}", offset),
        "mrn": mrn,
        "lrn": LRN,
        "declarantEori": EORI,
        "declaration": declaration(kind),
    }


def risk(control: str = "NONE", offset: timedelta = timedelta(0), mrn: str = MRN) -> Input:
    return "risk.assessed", {
        **_envelope(f"risk/{mrn}/{control}@{offset}", offset),
        "mrn": mrn,
        "control": control,
        "matchedProfiles": [] if control == "NONE" else ["RP-TEST"],
        "randomlySelected": False,
    }


def duties(offset: timedelta = timedelta(0), mrn: str = MRN) -> Input:
    def item(n: int, value: str, duty: str, vat: str) -> dict[str, Any]:
        return {
            "sequenceNumber": n,
            "customsValueEur": Decimal(value),
            "dutyRate": Decimal("0.000000"),
            "duty": Decimal(duty),
            "vatRate": Decimal("21.000000"),
            "vat": Decimal(vat),
        }

    return "duties.assessed", {
        **_envelope(f"duties/{mrn}@{offset}", offset),
        "mrn": mrn,
        "vatMemberState": "NL",
        "items": [item(1, "9215.00", "0.00", "1935.15"), item(2, "2303.75", "754.02", "606.96")],
        "totalDuty": TOTAL_DUTY,
        "totalVat": TOTAL_VAT,
    }


def cop(control: str, offset: timedelta, mrn: str = MRN) -> Input:
    envelope = _envelope(f"cop/{mrn}/{control}@{offset}", offset)
    return "cop.risk-result", {**envelope, "mrn": mrn, "control": control}


def presented(offset: timedelta, mrn: str = MRN) -> Input:
    envelope = _envelope(f"presented/{mrn}@{offset}", offset)
    return "cop.goods-presented", {**envelope, "mrn": mrn, "location": "NLRTM-TERMINAL-3"}


def control(result: str, offset: timedelta, role: str = "COP", mrn: str = MRN) -> Input:
    envelope = _envelope(f"control/{mrn}/{result}/{role}@{offset}", offset)
    return "control.result", {**envelope, "mrn": mrn, "result": result, "officeRole": role}


def invalidation(offset: timedelta, reason: str = "lodged twice", mrn: str = MRN) -> Input:
    envelope = _envelope(f"invalidation/{mrn}/{reason}@{offset}", offset)
    return "invalidation.requested", {**envelope, "mrn": mrn, "reason": reason}


def tick(offset: timedelta) -> Input:
    return "clock.tick", _envelope(f"tick@{offset}", offset)


def through_forward(kind: str = "A", sco: str = "NONE") -> list[Input]:
    """Acceptance, SCO risk and duties, all at T0: the declaration is forwarded at T0."""
    return [accepted(kind), risk(sco), duties()]


# --- the driver ---------------------------------------------------------------------------------


@dataclass
class Flow:
    state: dict[str, Any] | None = None
    steps: list[list[tuple[str, dict[str, Any]]]] = field(default_factory=list)
    last_status: dict[str, Any] | None = None

    @property
    def outputs(self) -> list[tuple[str, dict[str, Any]]]:
        return [out for produced in self.steps for out in produced]

    def of(self, logical: str) -> list[dict[str, Any]]:
        return [record for name, record in self.outputs if name == logical]

    def labels(self) -> list[list[str]]:
        return [[label(name, record) for name, record in produced] for produced in self.steps]


def run(inputs: Iterable[Input], flow: Flow | None = None) -> Flow:
    """Fold `inputs` through `step`, checking the invariants of every step (module docstring)."""
    flow = flow or Flow()
    event_ids = {record["eventId"] for _, record in flow.outputs}
    for logical, record in inputs:
        before = flow.state
        result = step(before, logical, record, CONFIG)
        produced: list[tuple[str, dict[str, Any]]] = []
        for out in result.outputs:
            SCHEMAS.encode(out.logical, out.record)  # the Avro contract of the output
            assert out.key == event_key(out.logical, out.record)
            assert out.record["occurredAt"] == record["occurredAt"], (logical, out.logical)
            assert out.record["eventId"] not in event_ids, (logical, out.logical)
            event_ids.add(out.record["eventId"])
            produced.append((out.logical, dict(out.record)))
        flow.steps.append(produced)
        if result.state is None:
            assert not result.outputs
            continue
        statuses = [r for name, r in produced if name == "declaration.status"]
        history_before = before["history"] if before is not None else []
        if result.state["history"] == history_before:
            assert not statuses, f"{logical}: a status without a change of state"
        else:
            assert len(statuses) == 1, f"{logical}: {len(statuses)} statuses for one change"
            [status] = statuses
            assert produced[-1] == ("declaration.status", status)  # after what it reports
            assert status["state"] == result.state["state"]
            # The history only grows, by the states this input moved through, at its time.
            previous = flow.last_status["history"] if flow.last_status is not None else []
            assert status["history"][: len(previous)] == previous
            added = status["history"][len(previous) :]
            assert added and added[-1]["state"] == status["state"]
            assert {h["occurredAt"] for h in added} == {record["occurredAt"]}
            flow.last_status = status
        # The stage stores the state in a JSON table: what it steps next is the JSON round trip.
        flow.state = json.loads(json.dumps(result.state))
    return flow


def label(logical: str, record: Mapping[str, Any]) -> str:
    """A short readable name of an output, with what distinguishes outputs of one kind."""
    if logical == "declaration.status":
        return f"status:{record['state']}"
    if logical == "trader.notification":
        code = str(record["messageCode"])
        return f"{code}:{record['control']}" if record["control"] else code
    if logical == "cop.forwarded":
        return f"forwarded:{record['instruction']}:{record['control']}"
    if logical == "declaration.not-released":
        return f"not-released:{record['reason']}"
    return logical.removeprefix("declaration.")


def without(record: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in record.items() if k not in keys}


OUTCOMES = {  # the terminal outcomes and the notification each one gives the trader
    "declaration.released": "IE429",
    "declaration.not-released": "IE451",
    "declaration.invalidated": "IE410",
}
RELEASE = ["released", "IE429", "status:RELEASED"]


def forward_labels(sco: str) -> list[list[str]]:
    instruction = "RELEASE_ALLOWED" if sco == "NONE" else "CONTROL_REQUIRED"
    return [
        ["status:ACCEPTED"],
        ["status:RISK_ASSESSED"],
        [f"forwarded:{instruction}:{sco}", "status:FORWARDED"],
    ]


# --- the table ----------------------------------------------------------------------------------

# Each scenario: the events after `through_forward(kind, sco)`, the outputs of each, final state.
SCENARIOS = [
    pytest.param(
        "A",
        "NONE",
        [(cop("NONE", H), RELEASE)],
        "RELEASED",
        id="no-control/cop-none/released",
    ),
    pytest.param(
        "A",
        "DOCUMENTARY",
        [
            (cop("NONE", H), ["IE460:DOCUMENTARY", "status:UNDER_CONTROL"]),
            (control("A1", 3 * H, "SCO"), RELEASE),
        ],
        "RELEASED",
        id="sco-documentary/cop-none/A1/released",
    ),
    pytest.param(
        "A",
        "NONE",
        [
            (cop("PHYSICAL", H), ["IE460:PHYSICAL", "status:UNDER_CONTROL"]),
            (
                control("B1", 5 * H),
                ["not-released:CONTROL_NOT_SATISFACTORY", "IE451", "status:NOT_RELEASED"],
            ),
        ],
        "NOT_RELEASED",
        id="cop-physical/B1/not-released",
    ),
    pytest.param(
        "A",
        "PHYSICAL",
        [
            (control("A1", H, "SCO"), []),  # before the COP answered: final control unknown
            # UNDER_CONTROL and RELEASED in one step: one status, both in its history.
            (cop("NONE", 2 * H), ["IE460:PHYSICAL", *RELEASE]),
        ],
        "RELEASED",
        id="A1-before-cop-answer/released-when-control-known",
    ),
    pytest.param(
        "A",
        "NONE",
        [
            (tick(2 * H - MS), []),
            (tick(2 * H), RELEASE),
        ],
        "RELEASED",
        id="cop-silent/timeout-at-exactly-2h/released",
    ),
    pytest.param(
        "A",
        "DOCUMENTARY",
        [
            (tick(2 * H), ["IE460:DOCUMENTARY", "status:UNDER_CONTROL"]),
            (cop("PHYSICAL", 2 * H + MS), []),  # late: the timeout stands for NONE
            (control("A1", 4 * H), RELEASE),
        ],
        "RELEASED",
        id="cop-silent/timeout/late-answer-ignored/A1",
    ),
    pytest.param(
        "A",
        "NONE",
        [
            (cop("NONE", H), RELEASE),
            (tick(2 * H), []),  # the timer was cancelled by the answer
        ],
        "RELEASED",
        id="cop-answer-cancels-timeout",
    ),
    pytest.param(
        "D",
        "NONE",
        [
            (cop("NONE", H), []),  # answered, but the goods are not presented yet
            (tick(2 * H), []),
            (presented(DAY), RELEASE),
        ],
        "RELEASED",
        id="type-D/cop-none/waits-for-presentation",
    ),
    pytest.param(
        "D",
        "NONE",
        [
            (cop("NONE", H), []),
            (tick(30 * DAY - MS), []),
            (tick(30 * DAY), ["not-released:LAPSED", "IE451", "status:NOT_RELEASED"]),
        ],
        "NOT_RELEASED",
        id="type-D/lapses-at-exactly-30-days",
    ),
    pytest.param(
        "D",
        "NONE",
        [
            (tick(30 * DAY), ["not-released:LAPSED", "IE451", "status:NOT_RELEASED"]),
        ],
        "NOT_RELEASED",
        id="type-D/cop-silent/one-tick-fires-timeout-then-lapse",
    ),
    pytest.param(
        "D",
        "DOCUMENTARY",
        [
            (cop("NONE", H), ["IE460:DOCUMENTARY", "status:UNDER_CONTROL"]),
            (presented(29 * DAY), []),  # cancels the lapse, the control is still pending
            (tick(31 * DAY), []),
            (control("A1", 32 * DAY), RELEASE),
        ],
        "RELEASED",
        id="type-D/presentation-cancels-lapse",
    ),
    pytest.param(
        "D",
        "PHYSICAL",
        [
            (cop("NONE", H), ["IE460:PHYSICAL", "status:UNDER_CONTROL"]),
            (control("A1", 2 * H), []),  # satisfactory, but not presented
            (presented(3 * H), RELEASE),
        ],
        "RELEASED",
        id="type-D/A1-waits-for-presentation",
    ),
    pytest.param(
        "A",
        "NONE",
        [
            (invalidation(H), ["invalidated", "IE410", "status:INVALIDATED"]),
            (cop("NONE", 2 * H), []),
            (tick(3 * H), []),
        ],
        "INVALIDATED",
        id="invalidated-while-forwarded",
    ),
    pytest.param(
        "A",
        "PHYSICAL",
        [
            (cop("NONE", H), ["IE460:PHYSICAL", "status:UNDER_CONTROL"]),
            (invalidation(2 * H), ["invalidated", "IE410", "status:INVALIDATED"]),
            (control("A1", 3 * H), []),
        ],
        "INVALIDATED",
        id="invalidated-under-control",
    ),
    pytest.param(
        "D",
        "NONE",
        [
            (invalidation(H), ["invalidated", "IE410", "status:INVALIDATED"]),
            (tick(30 * DAY), []),  # no lapse after the invalidation
            (presented(31 * DAY), []),
        ],
        "INVALIDATED",
        id="type-D/invalidated/no-lapse",
    ),
    # At most one terminal outcome, whatever follows it.
    pytest.param(
        "A",
        "NONE",
        [
            (cop("NONE", H), RELEASE),
            (control("B1", 2 * H), []),
            (cop("PHYSICAL", 3 * H), []),
            (presented(4 * H), []),
            (tick(30 * DAY), []),
            (invalidation(31 * DAY), ["IE456"]),
        ],
        "RELEASED",
        id="after-release/nothing-but-IE456",
    ),
    pytest.param(
        "A",
        "PHYSICAL",
        [
            (cop("NONE", H), ["IE460:PHYSICAL", "status:UNDER_CONTROL"]),
            (
                control("B1", 2 * H),
                ["not-released:CONTROL_NOT_SATISFACTORY", "IE451", "status:NOT_RELEASED"],
            ),
            (control("A1", 3 * H, "SCO"), []),
            (invalidation(4 * H), ["IE456"]),
        ],
        "NOT_RELEASED",
        id="after-B1/nothing-but-IE456",
    ),
    pytest.param(
        "D",
        "NONE",
        [
            (cop("NONE", H), []),
            (tick(30 * DAY), ["not-released:LAPSED", "IE451", "status:NOT_RELEASED"]),
            (presented(31 * DAY), []),
            (control("A1", 31 * DAY + H), []),
            (tick(60 * DAY), []),
        ],
        "NOT_RELEASED",
        id="after-lapse/presentation-too-late",
    ),
    pytest.param(
        "A",
        "NONE",
        [
            (invalidation(H, "first"), ["invalidated", "IE410", "status:INVALIDATED"]),
            (invalidation(2 * H, "second"), ["IE456"]),
            (cop("NONE", 3 * H), []),
        ],
        "INVALIDATED",
        id="second-invalidation/IE456",
    ),
]


@pytest.mark.parametrize(("kind", "sco", "rows", "final"), SCENARIOS)
def test_decision_table(
    kind: str, sco: str, rows: list[tuple[Input, list[str]]], final: str
) -> None:
    flow = run([*through_forward(kind, sco), *(event for event, _ in rows)])
    assert flow.labels() == [*forward_labels(sco), *(expected for _, expected in rows)]
    assert flow.last_status is not None
    assert flow.last_status["state"] == final
    # One terminal outcome, and the statuses walked the only path there is.
    assert len([n for n, _ in flow.outputs if n in OUTCOMES]) == 1
    states = [h["state"] for h in flow.last_status["history"]]
    assert states[:3] == list(PATH[:3])
    assert states[3:-1] in ([], ["UNDER_CONTROL"])


@pytest.mark.parametrize(("sco", "cop_control"), list(itertools.product(CONTROLS, repeat=2)))
def test_final_control_is_the_higher_of_sco_and_cop(sco: str, cop_control: str) -> None:
    flow = run([*through_forward("A", sco), cop(cop_control, H)])
    final = max(sco, cop_control, key=CONTROLS.index)
    expected = RELEASE if final == "NONE" else [f"IE460:{final}", "status:UNDER_CONTROL"]
    assert flow.labels()[-1] == expected
    forwarded = flow.of("cop.forwarded")[0]
    assert forwarded["control"] == sco  # the forward carries the SCO's own level


def test_a_step_with_two_moves_reports_both_in_the_history_of_its_one_status() -> None:
    flow = run([*through_forward("A", "PHYSICAL"), control("A1", H, "SCO"), cop("NONE", 2 * H)])
    assert flow.last_status is not None
    assert [(h["state"], h["occurredAt"]) for h in flow.last_status["history"]] == [
        ("ACCEPTED", T0),
        ("RISK_ASSESSED", T0),
        ("FORWARDED", T0),
        ("UNDER_CONTROL", T0 + 2 * H),
        ("RELEASED", T0 + 2 * H),
    ]


# --- what the outputs carry ---------------------------------------------------------------------


def test_the_forward_carries_the_whole_declaration_and_the_state_drops_it() -> None:
    flow = run([accepted("A"), risk("DOCUMENTARY")])
    assert flow.state is not None
    assert flow.state["declaration"] is not None  # kept until it has been forwarded
    flow = run([duties()], flow)
    [forwarded] = flow.of("cop.forwarded")
    _, acceptance = accepted("A")
    assert forwarded == {
        "eventId": forwarded["eventId"],
        "occurredAt": T0,
        "mrn": MRN,
        "presentationOffice": "NL000396",
        "instruction": "CONTROL_REQUIRED",
        "control": "DOCUMENTARY",
        "totalDuty": TOTAL_DUTY,
        "totalVat": TOTAL_VAT,
        "vatMemberState": "NL",
        "declaration": acceptance["declaration"],
    }
    assert flow.state is not None
    assert flow.state["declaration"] is None
    assert "Laptops" not in json.dumps(flow.state)  # nothing of the goods stays


def test_the_state_keeps_the_declaration_smaller_than_its_json_form() -> None:
    flow = run([accepted("A")])
    assert flow.state is not None
    kept = flow.state["declaration"]
    assert isinstance(kept, str)
    assert len(kept) < len(json.dumps(to_json(DECLARATION_SCHEMA, declaration("A")))) / 2


def test_an_unsettled_acceptance_holds_its_declaration_until_settled() -> None:
    logical, record = accepted("A")
    held = step(None, logical, record, CONFIG, settled=False)
    assert held.state is not None
    assert isinstance(held.state["declaration"], Held)
    assert held.state["declaration"].declaration is record["declaration"]
    assert settle(held, CONFIG) == step(None, logical, record, CONFIG)


def test_a_state_that_kept_the_json_form_still_forwards_its_declaration() -> None:
    # States written before the declaration was kept Avro-encoded hold its JSON form.
    flow = run([accepted("A"), risk("DOCUMENTARY")])
    assert flow.state is not None
    earlier = Flow({**flow.state, "declaration": to_json(DECLARATION_SCHEMA, declaration("A"))})
    [forwarded] = run([duties()], earlier).of("cop.forwarded")
    assert forwarded["declaration"] == accepted("A")[1]["declaration"]


def test_release_carries_the_assessed_totals_and_notifications_name_the_declaration() -> None:
    flow = run([*through_forward("A", "NONE"), cop("NONE", H)])
    [released] = flow.of("declaration.released")
    assert without(released, "eventId") == {
        "occurredAt": T0 + H,
        "mrn": MRN,
        "totalDuty": TOTAL_DUTY,
        "totalVat": TOTAL_VAT,
    }
    [ie429] = flow.of("trader.notification")
    assert without(ie429, "eventId") == {
        "occurredAt": T0 + H,
        "messageCode": "IE429",
        "lrn": LRN,
        "mrn": MRN,
        "declarantEori": EORI,
        "control": None,
        "errors": None,
    }


def test_a_cop_timeout_is_recorded_and_counts_as_none() -> None:
    flow = run([*through_forward("D", "NONE"), tick(2 * H)])
    assert flow.steps[-1] == []  # type D: nothing to say until the goods are presented
    assert flow.state is not None
    assert (flow.state["copTimedOut"], flow.state["copControl"]) == (True, "NONE")
    answered = run([*through_forward("D", "NONE"), cop("NONE", H)])
    assert answered.state is not None
    assert not answered.state.get("copTimedOut")


def test_the_cop_timeout_counts_from_the_forward_not_the_acceptance() -> None:
    # Duties come 5 h after the acceptance: the COP has until 7 h.
    flow = run([accepted("A"), risk("NONE"), duties(5 * H), tick(7 * H - MS), tick(7 * H)])
    assert flow.labels()[-2:] == [[], RELEASE]


def test_invalidation_copies_the_reason_and_notifies_ie410() -> None:
    flow = run([*through_forward("A", "NONE"), invalidation(H, "duplicate of 26FR0000000000B2R7")])
    [invalidated] = flow.of("declaration.invalidated")
    assert without(invalidated, "eventId") == {
        "occurredAt": T0 + H,
        "mrn": MRN,
        "reason": "duplicate of 26FR0000000000B2R7",
    }
    [ie410] = flow.of("trader.notification")
    assert (ie410["messageCode"], ie410["mrn"], ie410["lrn"]) == ("IE410", MRN, LRN)


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param([cop("NONE", H)], id="released"),
        pytest.param([cop("PHYSICAL", H), control("B1", 2 * H)], id="not-released"),
        pytest.param([invalidation(H, "first")], id="invalidated"),
    ],
)
def test_invalidation_after_the_outcome_only_notifies_ie456_r095(ending: list[Input]) -> None:
    flow = run([*through_forward("A", "NONE"), *ending])
    before = flow.state
    assert before is not None
    flow = run([invalidation(DAY, "too late")], flow)
    assert flow.labels()[-1] == ["IE456"]
    [(_, ie456)] = flow.steps[-1]
    assert (ie456["mrn"], ie456["lrn"], ie456["declarantEori"]) == (MRN, LRN, EORI)
    assert ie456["control"] is None
    [error] = ie456["errors"]
    assert (error["code"], error["pointer"]) == ("R095", "/mrn")
    assert error["message"]
    assert flow.state is not None
    assert without(flow.state, "eventIds") == without(before, "eventIds")


# --- redelivery, order of our own inputs, unknown MRNs --------------------------------------------


@pytest.mark.parametrize(
    "history",
    [
        pytest.param([accepted("A")], id="accepted"),
        pytest.param([risk("NONE")], id="risk-before-acceptance"),
        pytest.param([accepted("A"), risk("NONE")], id="risk"),
        pytest.param([accepted("A"), duties()], id="duties"),
        pytest.param([*through_forward("A", "PHYSICAL"), cop("NONE", H)], id="cop"),
        pytest.param([*through_forward("D", "NONE"), presented(H)], id="presented"),
        pytest.param([*through_forward("A", "PHYSICAL"), control("B1", H)], id="control"),
        pytest.param([*through_forward("A", "NONE"), invalidation(H)], id="invalidation"),
    ],
)
def test_a_redelivered_event_gives_nothing(history: list[Input]) -> None:
    flow = run(history)
    logical, record = history[-1]
    assert step(flow.state, logical, record, CONFIG) == Step(None)


def test_a_redelivered_invalidation_after_the_outcome_does_not_notify_twice() -> None:
    flow = run([*through_forward("A", "NONE"), cop("NONE", H), invalidation(DAY)])
    assert flow.labels()[-1] == ["IE456"]
    logical, record = invalidation(DAY)
    assert step(flow.state, logical, record, CONFIG) == Step(None)


OWN_INPUTS = {"accepted": accepted("A"), "risk": risk("NONE"), "duties": duties()}


def test_the_order_of_acceptance_risk_and_duties_does_not_change_the_decision() -> None:
    flows = {
        order: run([*(OWN_INPUTS[name] for name in order), cop("NONE", H)])
        for order in itertools.permutations(OWN_INPUTS)
    }
    baseline = flows["accepted", "risk", "duties"]
    for order, flow in flows.items():
        # Nothing before the acceptance: our own events are kept, not refused.
        first_output = next(i for i, produced in enumerate(flow.steps) if produced)
        assert first_output == order.index("accepted"), order
        assert [n for n, _ in flow.outputs if n != "declaration.status"] == [
            "cop.forwarded",
            "declaration.released",
            "trader.notification",
        ]
        # One forward per declaration, byte for byte the same whichever input came last
        # (its eventId derives from the acceptance), so a consumer can deduplicate it.
        [forwarded] = flow.of("cop.forwarded")
        assert encoded([("cop.forwarded", forwarded)]) == encoded(
            [("cop.forwarded", baseline.of("cop.forwarded")[0])]
        ), order
        # The status of that step is the same but for its eventId, which names its cause.
        [(_, status)] = [out for out in flow.steps[2] if out[0] == "declaration.status"]
        [(_, expected)] = [out for out in baseline.steps[2] if out[0] == "declaration.status"]
        assert without(status, "eventId") == without(expected, "eventId")
        # What the COP answer causes is the same, byte for byte, and so is the final state.
        assert encoded(flow.steps[-1]) == encoded(baseline.steps[-1]), order
        assert flow.last_status == baseline.last_status
        assert flow.state is not None and baseline.state is not None
        assert without(flow.state, "eventIds") == without(baseline.state, "eventIds")
        assert sorted(flow.state["eventIds"]) == sorted(baseline.state["eventIds"])


def test_risk_and_duties_before_acceptance_are_kept_silently() -> None:
    flow = run([duties(), risk("PHYSICAL")])
    assert flow.steps == [[], []]
    assert flow.state is not None
    assert not flow.state["accepted"]
    flow = run([accepted("A")], flow)
    assert flow.labels()[-1] == ["forwarded:CONTROL_REQUIRED:PHYSICAL", "status:FORWARDED"]
    assert flow.last_status is not None
    assert [h["state"] for h in flow.last_status["history"]] == list(PATH[:3])


def test_a_second_acceptance_of_one_mrn_changes_nothing() -> None:
    flow = run(through_forward("A", "NONE"))
    logical, record = accepted("D", offset=H)  # another eventId, another declaration
    flow = run([(logical, record)], flow)
    assert flow.steps[-1] == []
    assert flow.state is not None
    assert flow.state["presented"] is True  # still the type A of the first acceptance


EXTERNAL = [
    pytest.param(cop("NONE", H), id="cop.risk-result"),
    pytest.param(presented(H), id="cop.goods-presented"),
    pytest.param(control("A1", H), id="control.result"),
    pytest.param(invalidation(H), id="invalidation.requested"),
]


@pytest.mark.parametrize("event", EXTERNAL)
@pytest.mark.parametrize(
    "known",
    [
        pytest.param([], id="never-seen"),
        pytest.param([risk("NONE")], id="risk-only"),
        pytest.param([risk("NONE"), duties()], id="risk-and-duties"),
    ],
)
def test_an_outside_event_for_an_mrn_never_accepted_is_refused(
    event: Input, known: list[Input]
) -> None:
    flow = run(known)
    logical, record = event
    assert step(flow.state, logical, record, CONFIG) == Step(None, [], unknown_mrn=True)


@pytest.mark.parametrize(
    "known",
    [
        pytest.param([], id="never-seen"),
        pytest.param([risk("NONE"), duties()], id="not-accepted"),
        pytest.param([*through_forward("A", "NONE"), cop("NONE", H)], id="released"),
        pytest.param([accepted("D")], id="timer-not-due"),
    ],
)
def test_a_tick_that_fires_nothing_stores_nothing(known: list[Input]) -> None:
    flow = run(known)
    logical, record = tick(29 * DAY)
    assert step(flow.state, logical, record, CONFIG) == Step(None)


def test_an_outside_event_is_accepted_once_the_acceptance_is_known() -> None:
    flow = run([risk("NONE"), accepted("A")])
    logical, record = invalidation(H)
    assert not step(flow.state, logical, record, CONFIG).unknown_mrn


# --- properties of whole flows ----------------------------------------------------------------

FLOWS = [
    pytest.param([*through_forward("A", "DOCUMENTARY"), tick(2 * H), control("A1", 3 * H)]),
    pytest.param(
        [duties(), accepted("D"), risk("PHYSICAL"), cop("DOCUMENTARY", H), tick(30 * DAY)]
    ),
    pytest.param([*through_forward("D", "NONE"), presented(H), tick(2 * H), invalidation(DAY)]),
]


def encoded(outputs: Sequence[tuple[str, Mapping[str, Any]]]) -> list[bytes]:
    return [SCHEMAS.encode(logical, record) for logical, record in outputs]


@pytest.mark.parametrize("inputs", FLOWS)
def test_the_same_inputs_give_byte_identical_outputs(inputs: list[Input]) -> None:
    first, second = run(inputs), run(inputs)
    assert first.outputs
    assert encoded(first.outputs) == encoded(second.outputs)


@pytest.mark.parametrize("inputs", FLOWS)
def test_every_output_has_its_own_event_id_derived_from_its_cause(inputs: list[Input]) -> None:
    flow = run(inputs)
    ids = [record["eventId"] for _, record in flow.outputs]
    assert len(ids) == len(set(ids))
    assert all(uuid.UUID(i).version == 5 for i in ids)
    inputs_ids = {record["eventId"] for _, record in inputs}
    assert not inputs_ids & set(ids)


@pytest.mark.parametrize("inputs", FLOWS)
def test_every_output_occurs_when_its_cause_occurred(inputs: list[Input]) -> None:
    flow = run(inputs)
    for (_, cause), produced in zip(inputs, flow.steps, strict=True):
        for _, record in produced:
            assert record["occurredAt"] == cause["occurredAt"]


def test_one_tick_gives_different_event_ids_to_the_outputs_of_two_mrns() -> None:
    # The stage steps one tick once for every MRN that is due.
    other = "26FR0000000000C3R0"
    mine = run([*through_forward("A", "NONE"), tick(2 * H)])
    theirs = run(
        [accepted("A", mrn=other), risk("NONE", mrn=other), duties(mrn=other), tick(2 * H)]
    )
    assert {r["mrn"] for _, r in theirs.outputs} == {other}
    assert mine.labels()[-1] == theirs.labels()[-1] == RELEASE
    fired = [{r["eventId"] for _, r in flow.steps[-1]} for flow in (mine, theirs)]
    assert not fired[0] & fired[1]


# --- any order of any events --------------------------------------------------------------------

POOL: list[Input] = [
    accepted("A"),
    accepted("D"),
    *(risk(level) for level in CONTROLS),
    duties(),
    duties(3 * H),
    *(cop(level, H) for level in CONTROLS),
    presented(DAY),
    control("A1", 2 * H),
    control("B1", 2 * H),
    invalidation(4 * H),
    *(tick(at) for at in (H, 2 * H, 5 * H, 30 * DAY, 31 * DAY)),
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(POOL), max_size=12))
def test_any_sequence_keeps_the_guarantees(inputs: list[Input]) -> None:
    """Whatever arrives, in whatever order: the invariants of `run`, at most one forward, one
    IE460 and one terminal outcome, the states in their order, and no release before every
    condition of §9 holds."""
    flow = run(inputs)
    names = [n for n, _ in flow.outputs]
    assert names.count("cop.forwarded") <= 1
    outcomes = [n for n in names if n in OUTCOMES]
    assert len(outcomes) <= 1
    codes = [r["messageCode"] for r in flow.of("trader.notification")]
    assert codes.count("IE460") <= 1
    assert [c for c in codes if c != "IE460" and c != "IE456"] == [OUTCOMES[n] for n in outcomes]
    if flow.last_status is None:
        assert not flow.outputs  # nothing at all before an acceptance
        return
    states = [h["state"] for h in flow.last_status["history"]]
    order = [*PATH, "TERMINAL"]
    ranks = [order.index("TERMINAL" if s in TERMINAL else s) for s in states]
    assert states[0] == "ACCEPTED" and ranks == sorted(set(ranks)), states
    announced = [r["control"] for r in flow.of("trader.notification") if r["control"]]
    if announced:
        assert announced[0] == final_control_of(inputs[: cause_of(flow, "IE460")])
    if "declaration.released" in outcomes:
        # §9: accepted, presented, duties assessed, COP answered or timed out, and final
        # control NONE or an A1 received.
        before = inputs[: cause_of(flow, "declaration.released")]
        seen = {logical for logical, _ in before}
        assert {"declaration.accepted", "risk.assessed", "duties.assessed"} <= seen
        first_acceptance = next(r for n, r in before if n == "declaration.accepted")
        kind = first_acceptance["declaration"]["additionalDeclarationType"]
        assert kind == "A" or "cop.goods-presented" in seen
        final = final_control_of(before)
        if final == "NONE":
            assert not announced
        else:
            assert announced == [final]
            assert any(n == "control.result" and r["result"] == "A1" for n, r in before)


def cause_of(flow: Flow, kind: str) -> int:
    """How many inputs there were up to and including the one that caused the first output of
    `kind` (a logical name, or a message code)."""
    return 1 + next(
        i
        for i, produced in enumerate(flow.steps)
        if any(kind in (n, r.get("messageCode")) for n, r in produced)
    )


def final_control_of(inputs: list[Input]) -> str | None:
    """The final control as §8-§9 define it, from the inputs alone: the higher of the SCO's
    level and the COP's first answer after the acceptance, or NONE for the COP once a tick
    reached the forward's occurredAt + 2 h before it answered. None while one is unknown."""
    flow = run(inputs)
    forwarded = flow.of("cop.forwarded")
    if not forwarded:
        return None
    sco = next(r["control"] for n, r in inputs if n == "risk.assessed")
    deadline = forwarded[0]["occurredAt"] + CONFIG.cop_response_timeout
    accepted_at = next(i for i, (n, _) in enumerate(inputs) if n == "declaration.accepted")
    forwarded_at = next(
        i for i, produced in enumerate(flow.steps) if ("cop.forwarded", forwarded[0]) in produced
    )
    cop_level: str | None = None
    for i, (logical, record) in enumerate(inputs):
        if logical == "cop.risk-result" and i > accepted_at:
            cop_level = record["control"]
        elif logical == "clock.tick" and i > forwarded_at and record["occurredAt"] >= deadline:
            cop_level = "NONE"
        if cop_level is not None:
            break
    if cop_level is None:
        return None
    return str(max(sco, cop_level, key=CONTROLS.index))
