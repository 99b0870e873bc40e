"""The offline assessment of a JSON declaration: exactly what the risk and duties stages would
emit, in JSON form, and the same refusals as `cci validate`."""

from __future__ import annotations

import json
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.assessment import (
    DEFAULT_SCHEMAS_DIR,
    InvalidDeclaration,
    NotADeclaration,
    assess,
    load_declaration_json,
)
from streams.codec import SchemaCatalogue, catalogue
from streams.jsonform import from_json
from streams.reference import RandomSelection, ReferenceData, load_reference
from streams.risk import selection_draw

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
VALID = (FIXTURES / "declaration-valid.json").read_text()


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference()


@pytest.fixture(scope="module")
def schemas() -> SchemaCatalogue:
    return catalogue(DEFAULT_SCHEMAS_DIR)


def test_the_shipped_valid_declaration(reference: ReferenceData, schemas: SchemaCatalogue) -> None:
    declaration = load_declaration_json(VALID, schemas, reference, "FR")
    result = assess(declaration, reference, schemas)
    # Shipped rate 0.005: selected when the draw is below 50; this one is not.
    assert selection_draw("FR552100554", "ACME-2026-000042") >= 50
    assert result["risk"] == {"control": "NONE", "matchedProfiles": [], "randomlySelected": False}
    # NL 21 %. Laptops: 10000.00 USD × 0.9215 = 9215.00 EUR at 0 %, VAT 1935.15. T-shirts from
    # VN with preference 300: 2303.75 EUR at 0 %, VAT 483.7875 -> 483.79.
    assert result["duties"] == {
        "vatMemberState": "NL",
        "items": [
            {
                "sequenceNumber": 1,
                "customsValueEur": "9215.00",
                "dutyRate": "0.000000",
                "duty": "0.00",
                "vatRate": "21.000000",
                "vat": "1935.15",
            },
            {
                "sequenceNumber": 2,
                "customsValueEur": "2303.75",
                "dutyRate": "0.000000",
                "duty": "0.00",
                "vatRate": "21.000000",
                "vat": "483.79",
            },
        ],
        "totalDuty": "0.00",
        "totalVat": "2418.94",
    }
    assert json.loads(json.dumps(result)) == result


def test_keys_are_the_event_fields_without_envelope(
    reference: ReferenceData, schemas: SchemaCatalogue
) -> None:
    result = assess(load_declaration_json(VALID, schemas, reference, "FR"), reference)
    for key, logical in (("risk", "risk.assessed"), ("duties", "duties.assessed")):
        fields = [f["name"] for f in schemas.latest(logical).schema["fields"]]
        assert list(result[key]) == [f for f in fields if f not in ("eventId", "occurredAt", "mrn")]


def test_json_form_reads_back_through_the_event_schema(
    reference: ReferenceData, schemas: SchemaCatalogue
) -> None:
    document: dict[str, Any] = json.loads(VALID)
    document["goodsItems"][1]["countryOfOrigin"] = "CN"  # 12 % instead of the VN preference
    declaration = load_declaration_json(json.dumps(document), schemas, reference, "FR")
    selected = replace(reference, random_selection=RandomSelection(Decimal(1), "DOCUMENTARY"))
    result = assess(declaration, selected, schemas)
    assert result["risk"]["randomlySelected"] is True
    assert result["risk"]["control"] == "DOCUMENTARY"
    item = result["duties"]["items"][1]
    assert (item["dutyRate"], item["duty"]) == ("12.000000", "276.45")  # 2303.75 × 12 %
    envelope = {"eventId": "e", "occurredAt": "2026-01-01T00:00:00.000Z", "mrn": "m"}
    duties = from_json(schemas.latest("duties.assessed").schema, {**result["duties"], **envelope})
    assert duties["totalDuty"] == Decimal("276.45")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"lrn": "X"}', "required field is missing"),
        (VALID.replace('"lrn"', '"lrn2"'), "unknown field"),
    ],
)
def test_not_a_declaration(
    reference: ReferenceData, schemas: SchemaCatalogue, text: str, message: str
) -> None:
    with pytest.raises(NotADeclaration, match=message):
        load_declaration_json(text, schemas, reference, "FR")


def test_an_invalid_declaration_carries_its_rule_errors(
    reference: ReferenceData, schemas: SchemaCatalogue
) -> None:
    text = (FIXTURES / "declaration-invalid.json").read_text()
    with pytest.raises(InvalidDeclaration) as caught:
        load_declaration_json(text, schemas, reference, "FR")
    codes = [e.code for e in caught.value.errors]
    assert codes == ["R010", "R021", "R042", "R061", "R062", "R063", "R065", "R069"]
    assert "R069 /goodsItems/0/commodityCode" in str(caught.value)


def test_the_node_country_is_checked(reference: ReferenceData, schemas: SchemaCatalogue) -> None:
    with pytest.raises(InvalidDeclaration, match="R040"):
        load_declaration_json(VALID, schemas, reference, "DE")


def test_an_envelope_given_by_the_trader_is_kept_out_of_the_result(
    reference: ReferenceData, schemas: SchemaCatalogue
) -> None:
    document = {
        **json.loads(VALID),
        "eventId": "x",
        "occurredAt": "2026-04-01T08:00:00.000Z",
    }
    declaration = load_declaration_json(json.dumps(document), schemas, reference, "FR")
    assert declaration["eventId"] == "x"
    assert assess(declaration, reference, schemas) == assess(
        load_declaration_json(VALID, schemas, reference, "FR"), reference, schemas
    )
