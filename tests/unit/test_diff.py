"""`streams.diff`: the outcomes of the same declarations in two namespaces, aspect by aspect."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

import streams.cli
import streams.cli_tools
from streams.cli import main
from streams.diff import Difference, Event, compare, outcomes

EORI = "FR552100554"


def lodged(lrn: str) -> Event:
    return "declaration.lodged", {"lrn": lrn, "declarant": {"eori": EORI}}


def accepted(lrn: str, mrn: str) -> Event:
    return "declaration.accepted", {"mrn": mrn, "lrn": lrn, "declarantEori": EORI}


def risk(mrn: str, control: str, profiles: list[str], random: bool = False) -> Event:
    return "risk.assessed", {
        "mrn": mrn,
        "control": control,
        "matchedProfiles": profiles,
        "randomlySelected": random,
    }


def duties(mrn: str, *items: tuple[int, str, str]) -> Event:
    total_duty = sum((Decimal(d) for _, d, _ in items), Decimal("0.00"))
    total_vat = sum((Decimal(v) for _, _, v in items), Decimal("0.00"))
    return "duties.assessed", {
        "mrn": mrn,
        "items": [
            {"sequenceNumber": s, "duty": Decimal(d), "vat": Decimal(v)} for s, d, v in items
        ],
        "totalDuty": total_duty,
        "totalVat": total_vat,
    }


def notified(lrn: str, code: str, mrn: str | None) -> Event:
    return "trader.notification", {
        "messageCode": code,
        "lrn": lrn,
        "mrn": mrn,
        "declarantEori": EORI,
    }


def namespace(mrns: dict[str, str], **change: Any) -> list[Event]:
    """Three declarations: L1 released, L2 rejected, L3 under documentary control."""
    m1, m3 = mrns["L1"], mrns["L3"]
    errors = change.get("errors", [("R062", "/goodsItems/0/commodityCode"),
                                   ("R021", "/declarant/eori")])  # fmt: skip
    events: list[Event] = [
        lodged("L1"),
        lodged("L2"),
        lodged("L3"),
        accepted("L1", m1),
        notified("L1", "IE428", m1),
        ("declaration.rejected", {"lrn": "L2", "declarantEori": EORI,
                                  "errors": [{"code": c, "pointer": p} for c, p in errors]}),
        notified("L2", "IE456", None),
        accepted("L3", m3),
        notified("L3", "IE428", m3),
        risk(m3, change.get("l3_control", "DOCUMENTARY"), ["RP-TOY-SAFETY"]),
        duties(m1, *change.get("l1_items", [(1, "10.00", "22.00"), (2, "0.00", "4.00")])),
        risk(m1, "NONE", []),
        duties(m3, (1, "5.00", "10.00")),
        ("cop.forwarded", {"mrn": m1, "instruction": "RELEASE_ALLOWED"}),
        ("cop.forwarded", {"mrn": m3, "instruction": "CONTROL_REQUIRED"}),
        notified("L3", "IE460", m3),
    ]  # fmt: skip
    if change.get("l1_not_released"):
        events += [
            ("declaration.not-released", {"mrn": m1, "reason": "CONTROL_NOT_SATISFACTORY"}),
            notified("L1", "IE451", m1),
        ]
    else:
        events += [("declaration.released", {"mrn": m1}), notified("L1", "IE429", m1)]
    return events


A = {"L1": "26FR00000000000011", "L3": "26FR00000000000033"}
B = {"L1": "26FR0000000000001Z", "L3": "26FR0000000000003Z"}  # other MRNs, same declarations


def test_the_same_outcomes_under_other_mrns_are_no_difference() -> None:
    # Rejection errors in another order are the same rejection.
    other_order = [("R021", "/declarant/eori"), ("R062", "/goodsItems/0/commodityCode")]
    assert compare(namespace(A), namespace(B, errors=other_order)) == []


def test_outcomes_render_every_aspect() -> None:
    found = outcomes(namespace(A))
    assert found[f"{EORI}/L1"] == {
        "acceptance": "accepted",
        "control": "NONE []",
        "duties": "duty 10.00 vat 26.00 (1: 10.00/22.00; 2: 0.00/4.00)",
        "forward": "RELEASE_ALLOWED",
        "decision": "released",
        "notifications": "IE428 IE429",
    }
    assert found[f"{EORI}/L2"] == {
        "acceptance": "rejected: R021 /declarant/eori, R062 /goodsItems/0/commodityCode",
        "control": "none",
        "duties": "none",
        "forward": "none",
        "decision": "none",
        "notifications": "IE456",
    }
    assert found[f"{EORI}/L3"]["control"] == "DOCUMENTARY [RP-TOY-SAFETY]"
    assert found[f"{EORI}/L3"]["decision"] == "none"


def test_exactly_the_changed_aspects_are_reported() -> None:
    changed = [
        *namespace(
            B,
            l3_control="PHYSICAL",
            l1_items=[(1, "10.00", "22.00"), (2, "1.00", "4.20")],
            l1_not_released=True,
            errors=[("R021", "/declarant/eori")],
        ),
        lodged("L4"),
    ]
    assert compare(namespace(A), changed) == [
        Difference(
            f"{EORI}/L1",
            "duties",
            "duty 10.00 vat 26.00 (1: 10.00/22.00; 2: 0.00/4.00)",
            "duty 11.00 vat 26.20 (1: 10.00/22.00; 2: 1.00/4.20)",
        ),
        Difference(f"{EORI}/L1", "decision", "released", "not-released CONTROL_NOT_SATISFACTORY"),
        Difference(f"{EORI}/L1", "notifications", "IE428 IE429", "IE428 IE451"),
        Difference(
            f"{EORI}/L2",
            "acceptance",
            "rejected: R021 /declarant/eori, R062 /goodsItems/0/commodityCode",
            "rejected: R021 /declarant/eori",
        ),
        Difference(
            f"{EORI}/L3", "control", "DOCUMENTARY [RP-TOY-SAFETY]", "PHYSICAL [RP-TOY-SAFETY]"
        ),
        Difference(f"{EORI}/L4", "declaration", "absent", "present"),
    ]


def test_a_duplicate_outcome_and_an_unknown_mrn_are_differences() -> None:
    a = namespace(A)
    b = [*namespace(B), ("declaration.released", {"mrn": B["L1"]}),
         ("declaration.invalidated", {"mrn": "26FR000000000000ZZ"})]  # fmt: skip
    assert compare(a, b) == [
        Difference(f"{EORI}/L1", "decision", "released", "released + released"),
        Difference("MRN 26FR000000000000ZZ", "declaration", "absent", "present"),
    ]


def test_a_lodged_declaration_without_outcome_differs_from_an_accepted_one() -> None:
    differences = compare([lodged("L9")], [lodged("L9"), accepted("L9", "M9")])
    assert differences == [Difference(f"{EORI}/L9", "acceptance", "none", "accepted")]


def test_diff_refuses_a_bad_namespace_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    streams.cli_tools.register(streams.cli.app)
    code = main(["diff", "ok", "not a namespace"])
    out, err = capsys.readouterr()
    assert (code, out) == (2, "") and err.count("\n") == 1 and "namespace" in err
