"""The declaration generator: reproducible, always decodable, realistic enough to pass every rule
when asked for valid traffic, and spoilt in ways that reach most rules when asked for defects."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pytest

from streams.codec import catalogue
from streams.config import settings
from streams.generator import _DEFECTS, _context, _declaration, generate
from streams.jsonform import from_json
from streams.reference import ReferenceData, load_reference
from streams.validation import RuleError, validate

Declaration = dict[str, Any]

_MONEY = re.compile(r"-?[0-9]+\.[0-9]{2}")
_MASS = re.compile(r"[0-9]+\.[0-9]{3}")
_RATE = re.compile(r"[0-9]+\.[0-9]{6}")


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference()


@pytest.fixture(scope="module")
def schema() -> Any:
    return catalogue(settings().schemas_dir).latest("declaration.lodged").schema


def check(
    schema: Any, reference: ReferenceData, d: Declaration, country: str = "FR"
) -> list[RuleError]:
    return validate(from_json(schema, d), reference, country)


def test_same_seed_gives_the_same_declarations(reference: ReferenceData) -> None:
    first = list(generate(300, 0.3, 42, reference))
    assert first == list(generate(300, 0.3, 42, reference))


def test_different_seeds_give_different_lrns(reference: ReferenceData) -> None:
    lrns = {d["lrn"] for d in generate(300, 0.0, 1, reference)}
    assert lrns.isdisjoint(d["lrn"] for d in generate(300, 0.0, 2, reference))


@pytest.mark.parametrize("invalid_share", [0.0, 0.5, 1.0])
def test_every_declaration_converts(
    schema: Any, reference: ReferenceData, invalid_share: float
) -> None:
    for d in generate(1000, invalid_share, 3, reference):
        from_json(schema, d)


def test_json_form_of_spec_3(reference: ReferenceData) -> None:
    declarations = list(generate(300, 0.0, 5, reference))
    assert declarations[0]["occurredAt"] == "2026-04-01T08:00:00.000Z"
    for d in declarations:
        assert uuid.UUID(d["eventId"]).version == 4
        assert _MONEY.fullmatch(d["totalAmountInvoiced"])
        assert (d["exchangeRate"] is None) == (d["currency"] == "EUR")
        assert d["exchangeRate"] is None or _RATE.fullmatch(d["exchangeRate"])
        amounts = [Decimal(item["amountInvoiced"]) for item in d["goodsItems"]]
        assert Decimal(d["totalAmountInvoiced"]) == sum(amounts)
        for item in d["goodsItems"]:
            assert _MONEY.fullmatch(item["amountInvoiced"])
            assert _MASS.fullmatch(item["netMass"])
            assert item["grossMass"] is None or _MASS.fullmatch(item["grossMass"])


def test_event_time_advances_by_at_most_three_seconds(reference: ReferenceData) -> None:
    start = datetime(2026, 5, 2, 10, 30, tzinfo=UTC)
    instants = [
        datetime.fromisoformat(d["occurredAt"])
        for d in generate(500, 0.2, 9, reference, start=start)
    ]
    assert instants[0] == start
    gaps = [later - earlier for earlier, later in pairwise(instants)]
    assert all(timedelta(0) <= gap <= timedelta(seconds=3) for gap in gaps)


def test_valid_declarations_pass_every_rule(schema: Any, reference: ReferenceData) -> None:
    for d in generate(500, 0.0, 11, reference):
        assert check(schema, reference, d) == [], d


def test_valid_declarations_of_another_node_pass_every_rule(
    schema: Any, reference: ReferenceData
) -> None:
    for d in generate(200, 0.0, 12, reference, country="DE"):
        assert d["supervisingOffice"].startswith("DE")
        assert check(schema, reference, d, "DE") == [], d


def test_spoilt_declarations_all_fail(schema: Any, reference: ReferenceData) -> None:
    for d in generate(500, 1.0, 13, reference):
        assert check(schema, reference, d), d


def test_invalid_share_is_respected(schema: Any, reference: ReferenceData) -> None:
    declarations = list(generate(2000, 0.1, 14, reference))
    invalid = sum(1 for d in declarations if check(schema, reference, d))
    assert 0.06 <= invalid / len(declarations) <= 0.14


def test_defects_reach_most_rules(schema: Any, reference: ReferenceData) -> None:
    codes = {
        error.code
        for d in generate(3000, 1.0, 15, reference)
        for error in check(schema, reference, d)
        if "R010" <= error.code <= "R069"
    }
    assert len(codes) >= 18, sorted(codes)


@pytest.mark.parametrize("defect", _DEFECTS, ids=lambda defect: defect.__name__.lstrip("_"))
def test_each_defect_alone_breaks_a_rule(
    schema: Any, reference: ReferenceData, defect: Any
) -> None:
    # Uses the generator's internals: generate() picks defects at random and records none.
    ctx = _context(16, reference, "FR")
    for number in range(1, 31):
        d = _declaration(ctx, number, datetime(2026, 4, 1, tzinfo=UTC))
        defect(ctx, d)
        assert check(schema, reference, d), d


def test_every_tariff_line_is_used(reference: ReferenceData) -> None:
    used = set()
    for d in generate(1000, 0.0, 17, reference):
        for item in d["goodsItems"]:
            line = reference.tariff_line(item["commodityCode"])
            assert line is not None
            used.add(line.commodity_prefix)
    assert used == {line.commodity_prefix for line in reference.tariff}


def test_some_declarations_match_risk_profiles(reference: ReferenceData) -> None:
    declarations = list(generate(2000, 0.0, 18, reference))
    cn_toys = sum(
        any(
            i["commodityCode"].startswith("9503") and i["countryOfOrigin"] == "CN"
            for i in d["goodsItems"]
        )
        for d in declarations
    )
    # Present, but the exception: most toys must not be controlled.
    assert 0 < cn_toys < 0.05 * len(declarations)


def test_lrns_are_unique_within_a_call(reference: ReferenceData) -> None:
    lrns = Counter(d["lrn"] for d in generate(10_000, 0.05, 19, reference))
    assert lrns.most_common(1)[0][1] == 1


@pytest.mark.parametrize(
    ("count", "invalid_share", "country", "start"),
    [
        (-1, 0.0, "FR", None),
        (1, -0.1, "FR", None),
        (1, 1.5, "FR", None),
        (1, 0.0, "CH", None),
        (1, 0.0, "FR", datetime(2026, 4, 1)),
    ],
)
def test_arguments_are_checked(
    reference: ReferenceData,
    count: int,
    invalid_share: float,
    country: str,
    start: datetime | None,
) -> None:
    # Checked at the call, not at the first next(): a bad CLI option fails before any output.
    with pytest.raises(ValueError):
        generate(count, invalid_share, 1, reference, country, start)
