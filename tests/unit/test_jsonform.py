"""The JSON form of events (spec §2): conversion both ways, and errors that point at the value."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from fastavro import parse_schema

from streams.codec import catalogue
from streams.config import ROOT
from streams.jsonform import JsonFormError, from_json, to_json

SCHEMAS = catalogue(ROOT / "schemas")
LODGED = SCHEMAS.latest("declaration.lodged").schema

DECLARATION: dict[str, Any] = {
    "eventId": "0b6f9a7e-2f0c-4a8e-b1d2-6c3e5f7a9b10",
    "occurredAt": "2026-04-01T08:20:00.000Z",
    "lrn": "LRN-42",
    "declarationType": "IM",
    "additionalDeclarationType": "A",
    "supervisingOffice": "FR000730",
    "presentationOffice": "BE000200",
    "declarant": {"eori": "FR732829320", "name": "Verrerie du Nord"},
    "importer": {"eori": "FR732829320", "name": "Verrerie du Nord"},
    "representative": None,
    "authorisation": {"type": "CCL", "reference": "FRCCL0042", "holderEori": "FR732829320"},
    "currency": "GBP",
    "exchangeRate": "1.170000",
    "totalAmountInvoiced": "850.00",
    "goodsItems": [
        {
            "sequenceNumber": 1,
            "commodityCode": "70134900",
            "description": "Glassware",
            "procedureCode": "4000",
            "countryOfOrigin": "GB",
            "preference": "300",
            "netMass": "80.000",
            "grossMass": "95.500",
            "amountInvoiced": "800.00",
        },
        {
            "sequenceNumber": 2,
            "commodityCode": "48191000",
            "description": "Cartons",
            "procedureCode": "4000",
            "countryOfOrigin": "GB",
            "preference": "100",
            "netMass": "4.250",
            "grossMass": None,
            "amountInvoiced": "50.00",
        },
    ],
}

Edit = Callable[[dict[str, Any]], Any]


def error_of(edit: Edit, schema: Any = LODGED) -> JsonFormError:
    value = copy.deepcopy(DECLARATION)
    edit(value)
    with pytest.raises(JsonFormError) as caught:
        from_json(schema, value)
    return caught.value


def test_a_declaration_round_trips() -> None:
    native = from_json(LODGED, DECLARATION)
    assert native["occurredAt"] == datetime(2026, 4, 1, 8, 20, tzinfo=UTC)
    assert native["goodsItems"][0]["netMass"] == Decimal("80.000")
    assert native["exchangeRate"] == Decimal("1.17")
    assert native["representative"] is None
    assert to_json(LODGED, native) == DECLARATION


def test_absent_optional_fields_take_their_default() -> None:
    value = copy.deepcopy(DECLARATION)
    del value["representative"], value["goodsItems"][1]["grossMass"]
    native = from_json(LODGED, value)
    assert native["representative"] is None
    assert native["goodsItems"][1]["grossMass"] is None
    assert to_json(LODGED, native) == DECLARATION


def test_a_missing_required_field() -> None:
    error = error_of(lambda d: d.pop("lrn"))
    assert (error.pointer, error.message) == ("/lrn", "required field is missing")


def test_a_missing_field_of_a_nested_record() -> None:
    error = error_of(lambda d: d.update(representative={"eori": "FR552100554"}))
    assert (error.pointer, error.message) == ("/representative/status", "required field is missing")


def test_an_unknown_field() -> None:
    error = error_of(lambda d: d.update(lrm="LRN-42"))
    assert (error.pointer, error.message) == ("/lrm", "unknown field")


@pytest.mark.parametrize(
    ("name", "pointer"),
    [("a~b", "/declarant/a~0b"), ("a/b", "/declarant/a~1b"), ("~/~1", "/declarant/~0~1~01")],
)
def test_unknown_field_names_are_escaped_in_the_pointer(name: str, pointer: str) -> None:
    error = error_of(lambda d: d["declarant"].update({name: "x"}))
    assert error.pointer == pointer
    assert str(error) == f"{pointer}: unknown field"


@pytest.mark.parametrize(
    ("edit", "pointer", "message"),
    [
        (lambda d: d.update(lrn=42), "/lrn", "expected a string, got an integer"),
        (
            lambda d: d.update(representative={"eori": "FR552100554", "status": True}),
            "/representative/status",
            "got a boolean",
        ),
        (
            lambda d: d["goodsItems"][0].update(sequenceNumber=2**31),
            "/goodsItems/0/sequenceNumber",
            "got an integer",
        ),
        (
            lambda d: d.update(totalAmountInvoiced=850.0),
            "/totalAmountInvoiced",
            "expected a decimal written as a string, got a number",
        ),
        (
            lambda d: d.update(totalAmountInvoiced=True),
            "/totalAmountInvoiced",
            "expected a decimal written as a string, got a boolean",
        ),
        (lambda d: d.update(goodsItems={}), "/goodsItems", "expected a list, got an object"),
        (lambda d: d.update(declarant="FR732829320"), "/declarant", "expected an object"),
        (lambda d: d.update(occurredAt=1775031600000), "/occurredAt", "got an integer"),
    ],
)
def test_a_value_of_the_wrong_type(edit: Edit, pointer: str, message: str) -> None:
    error = error_of(edit)
    assert error.pointer == pointer
    assert message in error.message


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("totalAmountInvoiced", "1.234", "1.234 has more than 2 decimal places"),
        ("totalAmountInvoiced", "0.001", "0.001 has more than 2 decimal places"),
        (
            "totalAmountInvoiced",
            "12345678901234567.00",
            "12345678901234567.00 has more than 18 digits",
        ),
        # Precision counts the digits at the schema scale: 17 integer digits and 2 decimals.
        ("totalAmountInvoiced", "10000000000000000", "10000000000000000 has more than 18 digits"),
        ("exchangeRate", "1234567890123", "1234567890123 has more than 18 digits"),
        ("exchangeRate", "1.2345678", "1.2345678 has more than 6 decimal places"),
        ("totalAmountInvoiced", "NaN", "'NaN' is not a finite number"),
        ("totalAmountInvoiced", "-Infinity", "'-Infinity' is not a finite number"),
        ("totalAmountInvoiced", "12,50", "'12,50' is not a decimal number"),
        ("totalAmountInvoiced", "", "'' is not a decimal number"),
    ],
)
def test_a_decimal_out_of_its_schema(field: str, value: str, message: str) -> None:
    error = error_of(lambda d: d.update({field: value}))
    assert (error.pointer, error.message) == (f"/{field}", message)


@pytest.mark.parametrize(
    "value",
    ["0", "0.00", "0.0", "-0.00", "9999999999999999.99", "1000000000000000", "12.5"],
)
def test_money_within_its_schema_is_accepted(value: str) -> None:
    value_json = copy.deepcopy(DECLARATION)
    value_json["totalAmountInvoiced"] = value
    assert from_json(LODGED, value_json)["totalAmountInvoiced"] == Decimal(value)


def test_zero_is_zero_however_written() -> None:
    for written in ("0", "0.00"):
        value = copy.deepcopy(DECLARATION)
        value["goodsItems"][1]["amountInvoiced"] = written
        native = from_json(LODGED, value)
        assert native["goodsItems"][1]["amountInvoiced"] == Decimal(0)
        assert to_json(LODGED, native)["goodsItems"][1]["amountInvoiced"] == "0.00"


def test_a_nested_pointer() -> None:
    error = error_of(lambda d: d["goodsItems"][1].update(netMass="4.2500"))
    assert (error.pointer, error.message) == (
        "/goodsItems/1/netMass",
        "4.2500 has more than 3 decimal places",
    )
    error = error_of(lambda d: d["goodsItems"][1].update(grossMass=4.25))
    assert error.pointer == "/goodsItems/1/grossMass"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-04-01T08:20:00", "'2026-04-01T08:20:00' has no UTC offset (write Z or +hh:mm)"),
        ("2026-04-01", "'2026-04-01' has no UTC offset (write Z or +hh:mm)"),
        ("2026-04-01T08:20:00.0001Z", "'2026-04-01T08:20:00.0001Z' is finer than a millisecond"),
        (
            "2026-04-01T08:20:00.123456Z",
            "'2026-04-01T08:20:00.123456Z' is finer than a millisecond",
        ),
        # Beyond microseconds datetime drops the digits: they must still be refused.
        (
            "2026-04-01T08:20:00.0000001Z",
            "'2026-04-01T08:20:00.0000001Z' is finer than a millisecond",
        ),
        ("01/04/2026 08:20", "'01/04/2026 08:20' is not an ISO-8601 timestamp"),
        (
            "9999-12-31T23:00:00-05:00",
            "'9999-12-31T23:00:00-05:00' is out of range once in UTC",
        ),
    ],
)
def test_a_timestamp_that_is_not_a_utc_millisecond(value: str, message: str) -> None:
    error = error_of(lambda d: d.update(occurredAt=value))
    assert (error.pointer, error.message) == ("/occurredAt", message)


@pytest.mark.parametrize(
    ("value", "instant"),
    [
        ("2026-04-01T08:20:00Z", datetime(2026, 4, 1, 8, 20, tzinfo=UTC)),
        ("2026-04-01T10:20:00.5+02:00", datetime(2026, 4, 1, 8, 20, 0, 500000, tzinfo=UTC)),
        ("2026-04-01T08:20:00.123000000Z", datetime(2026, 4, 1, 8, 20, 0, 123000, tzinfo=UTC)),
    ],
)
def test_timestamps_with_an_offset_become_utc(value: str, instant: datetime) -> None:
    value_json = {**DECLARATION, "occurredAt": value}
    native = from_json(LODGED, value_json)["occurredAt"]
    assert native == instant
    assert native.tzinfo == UTC


def test_an_enum_value_not_in_the_symbols() -> None:
    schema = SCHEMAS.latest("control.result").schema
    value = {
        "eventId": "e",
        "occurredAt": "2026-04-01T08:20:00.000Z",
        "mrn": "26FR0000000000A1R4",
        "result": "C1",
        "officeRole": "SCO",
    }
    with pytest.raises(JsonFormError) as caught:
        from_json(schema, value)
    assert (caught.value.pointer, caught.value.message) == ("/result", "'C1' is not one of A1, B1")


def test_to_json_writes_the_schema_scale_and_millisecond_utc() -> None:
    schema = SCHEMAS.latest("declaration.released").schema
    native = {
        "eventId": "e",
        "occurredAt": datetime(2026, 4, 1, 10, 20, tzinfo=timezone(timedelta(hours=2))),
        "mrn": "26FR0000000000A1R4",
        "totalDuty": Decimal("5"),
        "totalVat": Decimal("0.1"),
    }
    assert to_json(schema, native) == {
        "eventId": "e",
        "occurredAt": "2026-04-01T08:20:00.000Z",
        "mrn": "26FR0000000000A1R4",
        "totalDuty": "5.00",
        "totalVat": "0.10",
    }


def test_to_json_refuses_a_decimal_finer_than_its_scale() -> None:
    schema = SCHEMAS.latest("declaration.released").schema
    native = {
        "eventId": "e",
        "occurredAt": datetime(2026, 4, 1, 8, 20, tzinfo=UTC),
        "mrn": "26FR0000000000A1R4",
        "totalDuty": Decimal("5.005"),
        "totalVat": Decimal("0"),
    }
    with pytest.raises(ValueError, match="more than 2 decimal places"):
        to_json(schema, native)


def test_a_named_type_first_defined_in_an_untaken_branch() -> None:
    # Control is defined in the optional `control` and used again in `controls`: with `control`
    # null the converter never walks its definition before it meets the reference.
    schema = parse_schema(
        {
            "type": "record",
            "name": "Notification",
            "namespace": "t",
            "fields": [
                {
                    "name": "control",
                    "type": [
                        "null",
                        {"type": "enum", "name": "Control", "symbols": ["NONE", "PHYSICAL"]},
                    ],
                    "default": None,
                },
                {"name": "controls", "type": {"type": "array", "items": "t.Control"}},
            ],
        },
        _write_hint=False,
    )
    value = {"control": None, "controls": ["PHYSICAL"]}
    assert from_json(schema, value) == value
    assert to_json(schema, value) == value
    with pytest.raises(JsonFormError) as caught:
        from_json(schema, {"controls": ["NONE", "SOME"]})
    assert caught.value.pointer == "/controls/1"
