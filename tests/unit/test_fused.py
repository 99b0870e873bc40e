"""The fused topology's step (`streams.fused`): an acceptance taken in by the decision stage
and assessed at once must leave the MRN where the four stages would have, with the very
assessment events the risk and duty stages write."""

from __future__ import annotations

from typing import Any

from streams.config import ROOT
from streams.decision import step
from streams.duties import assess_duties
from streams.events import assessment
from streams.fused import accept_and_assess
from streams.reference import load_reference
from streams.risk import assess_risk
from tests.unit.test_decision import CONFIG, SCHEMAS, accepted

REFERENCE = load_reference(ROOT / "reference")


def in_four_stages(record: dict[str, Any]) -> tuple[dict[str, Any] | None, list[Any]]:
    """What the four stages do with the acceptance: the risk and duty stages assess it, and the
    decision stage meets the acceptance, then the risk, then the duties."""
    risk = assessment("risk.assessed", record, assess_risk(record["declaration"], REFERENCE))
    duties = assessment("duties.assessed", record, assess_duties(record["declaration"], REFERENCE))
    state, outputs = None, []
    for logical, event in (
        ("declaration.accepted", record),
        ("risk.assessed", risk.record),
        ("duties.assessed", duties.record),
    ):
        taken = step(state, logical, event, CONFIG)
        assert taken.state is not None
        state = taken.state
        outputs.extend(taken.outputs)
    return state, [risk, duties, *outputs]


def test_an_acceptance_is_assessed_and_forwarded_as_the_four_stages_would() -> None:
    _, record = accepted()
    fused = accept_and_assess(None, record, CONFIG, REFERENCE)
    state, outputs = in_four_stages(record)
    assert fused.state == state
    assert state is not None and state["state"] == "FORWARDED"
    # One input, one status: the four stages' last, whose history has the other two's states.
    statuses = [out for out in outputs if out.logical == "declaration.status"]
    assert [s.record["state"] for s in statuses] == ["ACCEPTED", "RISK_ASSESSED", "FORWARDED"]
    assert [out for out in fused.outputs if out.logical == "declaration.status"] == statuses[-1:]
    assert [h["state"] for h in statuses[-1].record["history"]] == [
        "ACCEPTED",
        "RISK_ASSESSED",
        "FORWARDED",
    ]
    others = [out for out in outputs if out.logical != "declaration.status"]
    assert sorted(fused.outputs, key=repr) == sorted([*others, statuses[-1]], key=repr)
    logicals = [out.logical for out in fused.outputs]
    assert logicals.count("risk.assessed") == logicals.count("duties.assessed") == 1
    assert logicals.count("cop.forwarded") == 1
    # Each assessment leaves before the decision it causes.
    assert logicals.index("risk.assessed") < logicals.index("cop.forwarded")
    assert logicals.index("duties.assessed") < logicals.index("cop.forwarded")
    for out in fused.outputs:
        SCHEMAS.encode(out.logical, out.record)  # every output fits its contract


def test_the_same_acceptance_gives_the_same_outputs() -> None:
    _, record = accepted()
    first = accept_and_assess(None, record, CONFIG, REFERENCE)
    second = accept_and_assess(None, record, CONFIG, REFERENCE)
    assert first == second


def test_a_redelivered_acceptance_is_neither_taken_in_nor_assessed_again() -> None:
    _, record = accepted()
    taken = accept_and_assess(None, record, CONFIG, REFERENCE)
    again = accept_and_assess(taken.state, record, CONFIG, REFERENCE)
    assert again.state is None and again.outputs == []


def test_a_second_acceptance_of_the_mrn_is_not_assessed() -> None:
    _, first = accepted()
    _, second = accepted(kind="D")
    taken = accept_and_assess(None, first, CONFIG, REFERENCE)
    later = accept_and_assess(taken.state, second, CONFIG, REFERENCE)
    assert later.state is not None and later.state["acceptedEventId"] == first["eventId"]
    assert [out.logical for out in later.outputs] == []


def test_the_forward_carries_the_acceptance_s_own_declaration_and_the_state_none() -> None:
    # What lets the stage copy the declaration's bytes from the acceptance into the forward,
    # and what spares it encoding the declaration for a state that drops it at once.
    _, record = accepted()
    fused = accept_and_assess(None, record, CONFIG, REFERENCE)
    (forward,) = [out for out in fused.outputs if out.logical == "cop.forwarded"]
    assert forward.record["declaration"] is record["declaration"]
    assert fused.state is not None and fused.state["declaration"] is None
