"""Risk analysis (spec §5): each profile criterion alone and together, the control level, and the
deterministic random selection checked against an independently computed SHA-256 draw."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.assessment import DEFAULT_SCHEMAS_DIR
from streams.codec import catalogue
from streams.jsonform import from_json
from streams.reference import RandomSelection, ReferenceData, RiskProfile, load_reference
from streams.risk import assess_risk, randomly_selected, selection_draw

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "declaration-valid.json"
SHIPPED = load_reference()
DECLARANT = "FR552100554"
IMPORTER = "FR732829320"
NEVER = RandomSelection(Decimal("0"), "DOCUMENTARY")
ALWAYS = RandomSelection(Decimal("1"), "DOCUMENTARY")


def item(code: str = "6109100010", origin: str = "CN", amount: str = "100.00") -> dict[str, Any]:
    return {
        "sequenceNumber": 0,  # renumbered by `declaration`
        "commodityCode": code,
        "description": "goods",
        "procedureCode": "4000",
        "countryOfOrigin": origin,
        "preference": "100",
        "netMass": Decimal("1.000"),
        "grossMass": None,
        "amountInvoiced": Decimal(amount),
    }


def declaration(
    *items: dict[str, Any],
    declarant: str = DECLARANT,
    importer: str = IMPORTER,
    currency: str = "EUR",
    rate: str | None = None,
    lrn: str = "LRN-1",
) -> dict[str, Any]:
    """The shipped valid fixture (Avro-native) with the given items, parties and currency."""
    schema = catalogue(DEFAULT_SCHEMAS_DIR).latest("declaration.lodged").schema
    envelope = {"eventId": "e", "occurredAt": "2026-04-01T08:00:00.000Z"}
    record: dict[str, Any] = from_json(schema, {**envelope, **json.loads(FIXTURE.read_text())})
    goods = [{**it, "sequenceNumber": n} for n, it in enumerate(items or (item(),), start=1)]
    return {
        **record,
        "lrn": lrn,
        "declarant": {"eori": declarant, "name": "Declarant"},
        "importer": {"eori": importer, "name": "Importer"},
        "currency": currency,
        "exchangeRate": None if rate is None else Decimal(rate),
        "totalAmountInvoiced": sum((g["amountInvoiced"] for g in goods), Decimal("0.00")),
        "goodsItems": goods,
    }


def profile(profile_id: str = "P", control: str = "DOCUMENTARY", **criteria: Any) -> RiskProfile:
    return RiskProfile(id=profile_id, control=control, **criteria)


def reference(*profiles: RiskProfile, selection: RandomSelection = NEVER) -> ReferenceData:
    return replace(SHIPPED, risk_profiles=profiles, random_selection=selection)


def matched(decl: dict[str, Any], *profiles: RiskProfile) -> list[str]:
    result: list[str] = assess_risk(decl, reference(*profiles))["matchedProfiles"]
    return result


CRITERIA = [
    ("originCountries", {"origin_countries": frozenset({"CN", "VN"})}, True),
    ("originCountries", {"origin_countries": frozenset({"VN"})}, False),
    ("commodityPrefixes", {"commodity_prefixes": ("8471", "6109")}, True),
    ("commodityPrefixes", {"commodity_prefixes": ("61091000", "6110")}, True),
    ("commodityPrefixes", {"commodity_prefixes": ("6110", "109")}, False),  # prefix, not substring
    ("minCustomsValueEur", {"min_customs_value_eur": Decimal("99.99")}, True),
    ("minCustomsValueEur", {"min_customs_value_eur": Decimal("100.01")}, False),
    ("declarantEoris", {"declarant_eoris": frozenset({DECLARANT})}, True),
    ("declarantEoris", {"declarant_eoris": frozenset({IMPORTER})}, False),
    ("importerEoris", {"importer_eoris": frozenset({IMPORTER})}, True),
    ("importerEoris", {"importer_eoris": frozenset({DECLARANT})}, False),
    ("no criterion", {}, True),
]


@pytest.mark.parametrize(("name", "criteria", "matches"), CRITERIA, ids=[c[0] for c in CRITERIA])
def test_each_criterion_alone(name: str, criteria: dict[str, Any], matches: bool) -> None:
    decl = declaration(item("6109100010", "CN", "100.00"))
    assert matched(decl, profile(**criteria)) == (["P"] if matches else [])


def test_every_stated_criterion_must_hold() -> None:
    decl = declaration(item("6109100010", "CN", "6000.00"))
    full: dict[str, Any] = {
        "origin_countries": frozenset({"CN"}),
        "commodity_prefixes": ("6109",),
        "min_customs_value_eur": Decimal("5000"),
        "importer_eoris": frozenset({IMPORTER}),
    }
    assert matched(decl, profile(**full)) == ["P"]
    failing: dict[str, Any] = {
        "origin_countries": frozenset({"VN"}),
        "commodity_prefixes": ("6110",),
        "min_customs_value_eur": Decimal("6000.01"),
        "importer_eoris": frozenset({DECLARANT}),
    }
    for name, value in failing.items():
        assert matched(decl, profile(**{**full, name: value})) == [], name


def test_criteria_must_hold_on_the_same_item() -> None:
    # The CN item is not a T-shirt and the T-shirt is not from CN: no single item matches.
    decl = declaration(item("8471300000", "CN"), item("6109100010", "VN"))
    both = profile(origin_countries=frozenset({"CN"}), commodity_prefixes=("6109",))
    assert matched(decl, both) == []
    assert matched(declaration(item("8471300000", "CN"), item("6109100010", "CN")), both) == ["P"]


def test_min_value_boundary_is_inclusive_to_the_cent() -> None:
    threshold = profile(min_customs_value_eur=Decimal("5000"))
    assert matched(declaration(item(amount="5000.00")), threshold) == ["P"]
    assert matched(declaration(item(amount="4999.99")), threshold) == []


def test_min_value_compares_the_rounded_customs_value_in_eur() -> None:
    threshold = profile(min_customs_value_eur=Decimal("100"))
    # 200.00 USD × 0.499975 = 99.995 EUR, 100.00 once rounded half-up as spec §6 says.
    assert matched(declaration(item(amount="200.00"), currency="USD", rate="0.499975"), threshold)
    assert not matched(
        declaration(item(amount="200.00"), currency="USD", rate="0.499970"), threshold
    )
    # 100 units of a currency worth 2 EUR is 200 EUR, not 100.
    low = declaration(item(amount="100.00"), currency="GBP", rate="2")
    assert matched(low, profile(min_customs_value_eur=Decimal("200"))) == ["P"]
    assert matched(low, profile(min_customs_value_eur=Decimal("200.01"))) == []


def test_party_lists_look_at_their_own_party_only() -> None:
    decl = declaration(declarant="FR111111111", importer="FR222222222")
    assert matched(decl, profile(declarant_eoris=frozenset({"FR111111111", "X"}))) == ["P"]
    assert matched(decl, profile(declarant_eoris=frozenset({"FR222222222"}))) == []
    assert matched(decl, profile(importer_eoris=frozenset({"FR222222222"}))) == ["P"]
    assert matched(decl, profile(importer_eoris=frozenset({"FR111111111"}))) == []


def test_highest_control_wins_and_ids_are_sorted() -> None:
    profiles = [
        profile("Z-DOC", "DOCUMENTARY"),
        profile("M-PHYS", "PHYSICAL"),
        profile("A-NONE", "NONE"),
        profile("B-MISS", "PHYSICAL", origin_countries=frozenset({"US"})),
    ]
    result = assess_risk(declaration(), reference(*profiles))
    assert result == {
        "control": "PHYSICAL",
        "matchedProfiles": ["A-NONE", "M-PHYS", "Z-DOC"],
        "randomlySelected": False,
    }
    result = assess_risk(declaration(), reference(profiles[0], profiles[2]))
    assert result["control"] == "DOCUMENTARY"
    assert assess_risk(declaration(), reference(profiles[2]))["control"] == "NONE"
    assert assess_risk(declaration(), reference())["control"] == "NONE"


def test_shipped_profiles() -> None:
    ref = replace(SHIPPED, random_selection=NEVER)
    watched = assess_risk(declaration(importer="FR999999998"), ref)
    assert (watched["control"], watched["matchedProfiles"]) == ("PHYSICAL", ["RP-WATCHLIST"])
    cars = declaration(item("8703231990", "JP", "100000.00"), item("9503000000", "CN", "1.00"))
    result = assess_risk(cars, ref)
    assert result["control"] == "PHYSICAL"
    assert result["matchedProfiles"] == ["RP-TOY-SAFETY", "RP-VEHICLE-HIGHVAL"]


def independent_draw(eori: str, lrn: str) -> int:
    digest = hashlib.sha256((eori + "|" + lrn).encode("utf-8")).digest()
    return sum(byte << (8 * (7 - i)) for i, byte in enumerate(digest[:8])) % 10000


def test_selection_draw_known_vector() -> None:
    draw = independent_draw(DECLARANT, "ACME-2026-000042")
    assert selection_draw(DECLARANT, "ACME-2026-000042") == draw
    assert 0 < draw < 9999  # so that both sides of the boundary below are rates in [0, 1]
    rate_at = Decimal(draw) / 10000
    assert not randomly_selected(DECLARANT, "ACME-2026-000042", rate_at)  # strictly below
    assert randomly_selected(DECLARANT, "ACME-2026-000042", rate_at + Decimal("0.00005"))
    assert not randomly_selected(DECLARANT, "ACME-2026-000042", rate_at - Decimal("0.00005"))
    assert randomly_selected(DECLARANT, "ACME-2026-000042", rate_at + Decimal("1E-20"))


def test_selection_separates_eori_and_lrn() -> None:
    # The `|` separator keeps ("FR1", "23") and ("FR12", "3") apart.
    assert selection_draw("FR1", "23") == independent_draw("FR1", "23")
    assert selection_draw("FR12", "3") == independent_draw("FR12", "3")
    assert selection_draw("FR1", "23") != selection_draw("FR12", "3")


@given(eori=st.text(min_size=1, max_size=17), lrn=st.text(min_size=1, max_size=22))
def test_rate_zero_never_selects_and_rate_one_always_does(eori: str, lrn: str) -> None:
    assert 0 <= selection_draw(eori, lrn) < 10000
    assert not randomly_selected(eori, lrn, Decimal("0"))
    assert randomly_selected(eori, lrn, Decimal("1"))
    assert randomly_selected(eori, lrn, Decimal("0.9999")) == (selection_draw(eori, lrn) < 9999)


def test_selection_share_is_close_to_the_rate() -> None:
    selected = sum(randomly_selected(DECLARANT, f"LRN-{n}", Decimal("0.05")) for n in range(20000))
    assert 800 < selected < 1200  # 1000 expected; a wrong byte order or modulus drifts far off


def test_selection_raises_the_control_but_never_lowers_it() -> None:
    decl = declaration()
    result = assess_risk(decl, reference(selection=ALWAYS))
    assert result == {"control": "DOCUMENTARY", "matchedProfiles": [], "randomlySelected": True}
    physical = profile("P", "PHYSICAL")
    assert assess_risk(decl, reference(physical, selection=ALWAYS))["control"] == "PHYSICAL"
    to_physical = RandomSelection(Decimal("1"), "PHYSICAL")
    result = assess_risk(decl, reference(profile("D", "DOCUMENTARY"), selection=to_physical))
    assert (result["control"], result["matchedProfiles"]) == ("PHYSICAL", ["D"])
    to_none = RandomSelection(Decimal("1"), "NONE")
    result = assess_risk(decl, reference(selection=to_none))
    assert (result["control"], result["randomlySelected"]) == ("NONE", True)


def test_selection_uses_the_declarant_and_the_lrn() -> None:
    draw = selection_draw(DECLARANT, "LRN-7")
    at = RandomSelection((Decimal(draw) + 1) / 10000, "DOCUMENTARY")
    assert assess_risk(declaration(lrn="LRN-7"), reference(selection=at))["randomlySelected"]
    below = RandomSelection(Decimal(draw) / 10000, "DOCUMENTARY")
    assert not assess_risk(declaration(lrn="LRN-7"), reference(selection=below))["randomlySelected"]
