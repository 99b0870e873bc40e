"""Duties and VAT (spec §6): tariff line choice, preferential rates, half-up rounding at the .005
boundaries where banker's rounding would differ, currency conversion, VAT state and totals."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.assessment import DEFAULT_SCHEMAS_DIR
from streams.codec import catalogue
from streams.duties import AssessmentError, assess_duties, customs_value_eur
from streams.jsonform import from_json
from streams.reference import ReferenceData, TariffLine, load_reference

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "declaration-valid.json"
SHIPPED = load_reference()


def item(
    code: str = "8471300000", origin: str = "CN", amount: str = "100.00", preference: str = "100"
) -> dict[str, Any]:
    return {
        "sequenceNumber": 0,  # renumbered by `declaration`
        "commodityCode": code,
        "description": "goods",
        "procedureCode": "4000",
        "countryOfOrigin": origin,
        "preference": preference,
        "netMass": Decimal("1.000"),
        "grossMass": None,
        "amountInvoiced": Decimal(amount),
    }


def declaration(
    *items: dict[str, Any],
    office: str = "DE004712",
    currency: str = "EUR",
    rate: str | None = None,
) -> dict[str, Any]:
    """The shipped valid fixture (Avro-native) with the given items, office and currency."""
    schema = catalogue(DEFAULT_SCHEMAS_DIR).latest("declaration.lodged").schema
    envelope = {"eventId": "e", "occurredAt": "2026-04-01T08:00:00.000Z"}
    record: dict[str, Any] = from_json(schema, {**envelope, **json.loads(FIXTURE.read_text())})
    goods = [{**it, "sequenceNumber": n} for n, it in enumerate(items or (item(),), start=1)]
    return {
        **record,
        "presentationOffice": office,
        "currency": currency,
        "exchangeRate": None if rate is None else Decimal(rate),
        "totalAmountInvoiced": sum((g["amountInvoiced"] for g in goods), Decimal("0.00")),
        "goodsItems": goods,
    }


def with_tariff(*lines: TariffLine) -> ReferenceData:
    return replace(SHIPPED, tariff=lines)


def only_item(result: dict[str, Any]) -> dict[str, Any]:
    [single] = result["items"]
    assert isinstance(single, dict)
    return single


def test_customs_value_converts_and_rounds_half_up() -> None:
    assert customs_value_eur(Decimal("10000.00"), Decimal("0.921500")) == Decimal("9215.00")
    # 0.125 EUR: half-up gives 0.13 where half-even would give 0.12.
    assert customs_value_eur(Decimal("1.00"), Decimal("0.125000")) == Decimal("0.13")
    assert customs_value_eur(Decimal("0.01"), Decimal("0.499999")) == Decimal("0.00")
    assert str(customs_value_eur(Decimal("5"), None)) == "5.00"


def test_longest_prefix_wins_in_the_shipped_tariff() -> None:
    roasted = only_item(assess_duties(declaration(item("0901210000")), SHIPPED))
    green = only_item(assess_duties(declaration(item("0901110000")), SHIPPED))
    assert (roasted["dutyRate"], roasted["duty"]) == (Decimal("7.500000"), Decimal("7.50"))
    assert (green["dutyRate"], green["duty"]) == (Decimal("0.000000"), Decimal("0.00"))


def test_longest_prefix_wins_whatever_the_order_of_the_lines() -> None:
    lines = (TariffLine("610910", Decimal("5")), TariffLine("6109", Decimal("12")))
    for tariff in (lines, lines[::-1]):
        result = assess_duties(declaration(item("6109100010")), with_tariff(*tariff))
        assert only_item(result)["dutyRate"] == Decimal("5")


@pytest.mark.parametrize(
    ("origin", "preference", "rate"),
    [
        ("VN", "300", "0"),  # claimed and granted to VN
        ("CN", "300", "12"),  # claimed, but the line grants nothing to CN
        ("VN", "100", "12"),  # granted to VN, but not claimed
        ("VN", "200", "12"),
    ],
)
def test_preferential_rate_needs_preference_300_and_a_listed_origin(
    origin: str, preference: str, rate: str
) -> None:
    result = assess_duties(declaration(item("6109100010", origin, "100.00", preference)), SHIPPED)
    assert only_item(result)["dutyRate"] == Decimal(rate)
    assert only_item(result)["duty"] == Decimal(rate)  # on 100.00 EUR


def test_duty_rounds_half_up_where_half_even_differs() -> None:
    # 3.00 × 7.5 % = 0.225: half-up 0.23, half-even 0.22.
    assert Decimal("0.225").quantize(Decimal("0.01"), ROUND_HALF_EVEN) == Decimal("0.22")
    result = assess_duties(declaration(item("0901210000", amount="3.00")), SHIPPED)
    assert only_item(result)["duty"] == Decimal("0.23")
    # Just below the boundary: 2.99 × 7.5 % = 0.22425.
    result = assess_duties(declaration(item("0901210000", amount="2.99")), SHIPPED)
    assert only_item(result)["duty"] == Decimal("0.22")


def test_vat_is_on_value_plus_duty_rounded_half_up() -> None:
    # 1.50 EUR at 0 % duty, DE 19 %: 0.285 -> 0.29 (half-even: 0.28).
    result = only_item(assess_duties(declaration(item("8471300000", amount="1.50")), SHIPPED))
    assert (result["duty"], result["vatRate"], result["vat"]) == (
        Decimal("0.00"),
        Decimal("19.000000"),
        Decimal("0.29"),
    )
    # 1000.00 EUR of T-shirts at 12 %: duty 120.00, VAT 19 % of 1120.00 = 212.80.
    result = only_item(assess_duties(declaration(item("6109100010", amount="1000.00")), SHIPPED))
    assert (result["duty"], result["vat"]) == (Decimal("120.00"), Decimal("212.80"))


def test_vat_state_is_the_presentation_office_country() -> None:
    finnish = assess_duties(declaration(item(amount="100.00"), office="FI000123"), SHIPPED)
    assert finnish["vatMemberState"] == "FI"
    assert only_item(finnish)["vatRate"] == Decimal("25.500000")
    assert only_item(finnish)["vat"] == Decimal("25.50")
    german = assess_duties(declaration(item(amount="100.00"), office="DE004712"), SHIPPED)
    assert (german["vatMemberState"], only_item(german)["vat"]) == ("DE", Decimal("19.00"))


def test_exchange_rate_applies_before_duty_and_vat() -> None:
    # 1000.00 USD at 0.921500 = 921.50 EUR; 12 % duty = 110.58; NL 21 % of 1032.08 = 216.7368.
    result = assess_duties(
        declaration(
            item("6109100010", amount="1000.00"), office="NL000396", currency="USD", rate="0.9215"
        ),
        SHIPPED,
    )
    assert only_item(result) == {
        "sequenceNumber": 1,
        "customsValueEur": Decimal("921.50"),
        "dutyRate": Decimal("12.000000"),
        "duty": Decimal("110.58"),
        "vatRate": Decimal("21.000000"),
        "vat": Decimal("216.74"),
    }


def test_totals_are_sums_of_the_rounded_items() -> None:
    # Each item: 0.01 × 7.5 % = 0.00075 -> duty 0.00; the unrounded sum over 10 items would be
    # 0.0075 -> 0.01. VAT 19 % of 0.01 = 0.0019 -> 0.00 each, 0.019 -> 0.02 unrounded.
    items = [item("0901210000", amount="0.01") for _ in range(10)]
    result = assess_duties(declaration(*items), SHIPPED)
    assert [i["sequenceNumber"] for i in result["items"]] == list(range(1, 11))
    assert (result["totalDuty"], result["totalVat"]) == (Decimal("0.00"), Decimal("0.00"))
    items = [item("6109100010", amount="10.00"), item("0901210000", amount="3.00")]
    result = assess_duties(declaration(*items), SHIPPED)
    assert result["totalDuty"] == Decimal("1.20") + Decimal("0.23")
    assert result["totalVat"] == Decimal("2.13") + Decimal("0.61")  # 19 % of 11.20 and 3.23


def test_result_does_not_depend_on_the_global_decimal_context() -> None:
    from decimal import ROUND_DOWN, localcontext

    expected = assess_duties(declaration(item("0901210000", amount="12345678901234.56")), SHIPPED)
    with localcontext(prec=3, rounding=ROUND_DOWN):
        again = assess_duties(declaration(item("0901210000", amount="12345678901234.56")), SHIPPED)
    assert again == expected
    assert only_item(expected)["duty"] == Decimal("925925917592.59")


def test_missing_tariff_line_names_the_item() -> None:
    decl = declaration(item(), item("0101210000"))
    with pytest.raises(AssessmentError, match="goods item 2: commodityCode 0101210000"):
        assess_duties(decl, SHIPPED)


def test_unknown_vat_state_names_the_state() -> None:
    with pytest.raises(AssessmentError, match="'CH' has no VAT rate"):
        assess_duties(declaration(office="CH000123"), SHIPPED)


def test_foreign_currency_without_rate_is_refused() -> None:
    with pytest.raises(AssessmentError, match="USD has no exchangeRate"):
        assess_duties(declaration(currency="USD"), SHIPPED)


def test_a_rate_the_contract_cannot_carry_is_refused() -> None:
    reference = with_tariff(TariffLine("8471", Decimal("1.0000001")))
    with pytest.raises(AssessmentError, match=r"line 8471 1\.0000001 does not fit"):
        assess_duties(declaration(), reference)


def test_result_encodes_as_duties_assessed() -> None:
    result = assess_duties(declaration(item(), item("6109100010", "VN", "7.77", "300")), SHIPPED)
    record = {**result, "eventId": "e", "occurredAt": datetime(2026, 1, 1, tzinfo=UTC), "mrn": "m"}
    schemas = catalogue(DEFAULT_SCHEMAS_DIR)
    assert schemas.decode("duties.assessed", schemas.encode("duties.assessed", record)) == record


CODES = [f"{line.commodity_prefix:0<10}" for line in SHIPPED.tariff]
amounts = st.decimals(min_value=0, max_value=10**9, places=2, allow_nan=False)
rates = st.decimals(min_value=Decimal("0.000001"), max_value=1000, places=6, allow_nan=False)
items_st = st.lists(
    st.builds(
        item,
        code=st.sampled_from(CODES),
        origin=st.sampled_from(["CN", "VN", "MA", "JP", "US"]),
        amount=amounts.map(str),
        preference=st.sampled_from(["100", "200", "300"]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    items=items_st,
    state=st.sampled_from(sorted(SHIPPED.vat_rates)),
    rate=st.none() | rates.map(str),
)
def test_money_has_two_places_is_not_negative_and_totals_add_up(
    items: list[dict[str, Any]], state: str, rate: str | None
) -> None:
    currency = "EUR" if rate is None else "USD"
    decl = declaration(*items, office=f"{state}000001", currency=currency, rate=rate)
    result = assess_duties(decl, SHIPPED)
    money = [result["totalDuty"], result["totalVat"]]
    for assessed in result["items"]:
        money += [assessed["customsValueEur"], assessed["duty"], assessed["vat"]]
        assert assessed["dutyRate"].as_tuple().exponent == -6
        assert assessed["vatRate"] == SHIPPED.vat_rates[state]
    for value in money:
        assert value.as_tuple().exponent == -2
        assert value >= 0
    assert result["totalDuty"] == sum(i["duty"] for i in result["items"])
    assert result["totalVat"] == sum(i["vat"] for i in result["items"])
    record = {**result, "eventId": "e", "occurredAt": datetime(2026, 1, 1, tzinfo=UTC), "mrn": "m"}
    catalogue(DEFAULT_SCHEMAS_DIR).encode("duties.assessed", record)  # fits the contract
