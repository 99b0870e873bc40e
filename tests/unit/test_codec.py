"""Avro single-object encoding of every event: round trips, the header, and how bad bytes fail."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec import HEADER_SIZE, MAGIC, DecodeError, Embedded, SchemaCatalogue, catalogue
from streams.config import ROOT
from streams.jsonform import from_json, to_json

SCHEMAS = catalogue(ROOT / "schemas")

EVENT_ID = "3b0d7a52-4f7e-4a1b-9c53-0f1e2d3c4b5a"
AT = "2026-04-01T08:20:00.000Z"
MRN = "26FR0000000000A1R4"

DECLARATION: dict[str, Any] = {
    "eventId": EVENT_ID,
    "occurredAt": AT,
    "lrn": "LRN-2026-0001",
    "declarationType": "IM",
    "additionalDeclarationType": "D",
    "supervisingOffice": "FR000730",
    "presentationOffice": "DE004712",
    "declarant": {"eori": "FR732829320", "name": "Soieries Lyonnaises"},
    "importer": {"eori": "DE123456789012345", "name": "Textil Import GmbH"},
    "representative": {"eori": "FR552100554", "status": 3},
    "authorisation": {"type": "CCL", "reference": "FRCCL2026001", "holderEori": "FR732829320"},
    "currency": "USD",
    "exchangeRate": "0.921450",
    "totalAmountInvoiced": "15300.45",
    "goodsItems": [
        {
            "sequenceNumber": 1,
            "commodityCode": "5007209000",
            "description": "Woven silk fabric",
            "procedureCode": "4000",
            "countryOfOrigin": "CN",
            "preference": "100",
            "netMass": "120.500",
            "grossMass": "131.250",
            "amountInvoiced": "15000.00",
        },
        {
            "sequenceNumber": 2,
            "commodityCode": "63079098",
            "description": "Samples, no commercial value",
            "procedureCode": "4000",
            "countryOfOrigin": "VN",
            "preference": "300",
            "netMass": "0.125",
            "grossMass": None,
            "amountInvoiced": "300.45",
        },
    ],
}

RULE_ERROR = {"code": "R062", "pointer": "/goodsItems/1/commodityCode", "message": "not 8 digits"}

# The JSON form of one realistic message per event, written canonically (decimals at their
# scale, timestamps in milliseconds with Z, optional fields explicit) so that to_json must give
# it back unchanged.
SAMPLES: dict[str, dict[str, Any]] = {
    "clock.tick": {"eventId": EVENT_ID, "occurredAt": AT},
    "control.result": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "result": "B1",
        "officeRole": "COP",
    },
    "cop.forwarded": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "presentationOffice": "DE004712",
        "instruction": "CONTROL_REQUIRED",
        "control": "PHYSICAL",
        "totalDuty": "1153.71",
        "totalVat": "2898.27",
        "vatMemberState": "DE",
        "declaration": DECLARATION,
    },
    "cop.goods-presented": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "location": "Hamburg Waltershof",
    },
    "cop.risk-result": {"eventId": EVENT_ID, "occurredAt": AT, "mrn": MRN, "control": "NONE"},
    "dead-letter": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "stage": "intake",
        "reason": "unknown-schema",
        "error": "fingerprint 0011223344556677 is in no catalogue",
        "sourceTopic": "cci.declarations.lodged",
        "sourcePartition": 5,
        "sourceOffset": 2**40 + 7,
        "sourceTimestamp": "2026-04-01T08:19:59.875Z",
        "key": "RlI3MzI4MjkzMjAvTFJOLTE=",
        "value": "wwEAESIzRFVmd/8=",
        "headers": [
            {"key": "traceparent", "value": "MDAtYWJjLWRlZi0wMQ=="},
            {"key": "empty", "value": None},
        ],
    },
    "declaration.accepted": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "lrn": "LRN-2026-0001",
        "declarantEori": "FR732829320",
        "declaration": DECLARATION,
    },
    "declaration.invalidated": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "reason": "Declared twice by mistake",
    },
    "declaration.lodged": DECLARATION,
    "declaration.not-released": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "reason": "LAPSED",
    },
    "declaration.rejected": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "lrn": "LRN-2026-0002",
        "declarantEori": "FR732829320",
        "errors": [
            {"code": "R052", "pointer": "/totalAmountInvoiced", "message": "sum is 15300.45"},
            RULE_ERROR,
        ],
    },
    "declaration.released": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "totalDuty": "0.00",
        "totalVat": "-0.01",
    },
    "declaration.status": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "lrn": "LRN-2026-0001",
        "state": "UNDER_CONTROL",
        "history": [
            {"state": "ACCEPTED", "occurredAt": "1969-12-31T23:59:59.999Z"},
            {"state": "RISK_ASSESSED", "occurredAt": "2026-04-01T08:20:00.001Z"},
            {"state": "UNDER_CONTROL", "occurredAt": "9999-12-31T23:59:59.999Z"},
        ],
    },
    "duties.assessed": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "vatMemberState": "DE",
        "items": [
            {
                "sequenceNumber": 1,
                "customsValueEur": "13821.75",
                "dutyRate": "8.000000",
                "duty": "1105.74",
                "vatRate": "19.000000",
                "vat": "2836.21",
            },
            {
                "sequenceNumber": 2,
                "customsValueEur": "9999999999999999.99",
                "dutyRate": "0.000001",
                "duty": "0.00",
                "vatRate": "999999999999.999999",
                "vat": "0.01",
            },
        ],
        "totalDuty": "1105.74",
        "totalVat": "2836.22",
    },
    "invalidation.requested": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "reason": "Goods never shipped — « erreur »",
    },
    "risk.assessed": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "mrn": MRN,
        "control": "DOCUMENTARY",
        "matchedProfiles": ["P-ORIGIN-CN", "P-SILK"],
        "randomlySelected": True,
    },
    "trader.notification": {
        "eventId": EVENT_ID,
        "occurredAt": AT,
        "messageCode": "IE456",
        "lrn": "LRN-2026-0002",
        "mrn": None,
        "declarantEori": "FR732829320",
        "control": None,
        "errors": [RULE_ERROR],
    },
}


def native(logical: str, sample: dict[str, Any] | None = None) -> dict[str, Any]:
    value = from_json(
        SCHEMAS.latest(logical).schema, SAMPLES[logical] if sample is None else sample
    )
    assert isinstance(value, dict)
    return value


def test_there_is_a_sample_for_every_event() -> None:
    assert sorted(SAMPLES) == SCHEMAS.logical_names()


@pytest.mark.parametrize("logical", sorted(SAMPLES))
def test_every_event_round_trips(logical: str) -> None:
    record = native(logical)
    decoded = SCHEMAS.decode(logical, SCHEMAS.encode(logical, record))
    assert decoded == record
    assert to_json(SCHEMAS.latest(logical).schema, decoded) == SAMPLES[logical]
    assert SCHEMAS.decode_any(SCHEMAS.encode(logical, record)) == (logical, record)


@pytest.mark.parametrize("version", list(SCHEMAS), ids=lambda v: f"{v.logical}-v{v.version}")
def test_the_codec_hands_fastavro_schemas_it_does_not_parse_again(version: Any) -> None:
    # Without fastavro's mark, its writer and reader parse the schema again for every message,
    # about half the cost of an encode; the mark must not change the canonical form.
    assert version.codec_schema.get("__fastavro_parsed") is True
    assert "__fastavro_parsed" not in version.schema
    assert to_parsing_canonical_form(version.codec_schema) == to_parsing_canonical_form(
        version.schema
    )


def test_the_optional_branches_round_trip_too() -> None:
    sample = copy.deepcopy(DECLARATION)
    sample.update(representative=None, currency="EUR", exchangeRate=None)
    record = native("declaration.lodged", sample)
    assert SCHEMAS.decode("declaration.lodged", SCHEMAS.encode("declaration.lodged", record)) == (
        record
    )
    notification = {
        **SAMPLES["trader.notification"],
        "messageCode": "IE460",
        "mrn": MRN,
        "control": "PHYSICAL",
        "errors": None,
    }
    record = native("trader.notification", notification)
    wire = SCHEMAS.encode("trader.notification", record)
    assert SCHEMAS.decode("trader.notification", wire) == record


# --- Header and fingerprint ------------------------------------------------------------------

RABIN_EMPTY = 0xC15D213AA4D7A795


def _rabin_table() -> list[int]:
    table = []
    for byte in range(256):
        fp = byte
        for _ in range(8):
            fp = (fp >> 1) ^ (RABIN_EMPTY if fp & 1 else 0)
        table.append(fp)
    return table


RABIN_TABLE = _rabin_table()


def rabin64(data: bytes) -> int:
    """CRC-64-AVRO as the Avro specification gives it ("Schema Fingerprints")."""
    fp = RABIN_EMPTY
    for byte in data:
        fp = (fp >> 8) ^ RABIN_TABLE[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize(
    ("canonical", "signed"),
    [
        # Values of the Java implementation, which prints fingerprints as signed longs.
        ('"null"', 7195948357588979594),
        ('"int"', 8247732601305521295),
        ('"long"', -3434872931120570953),
        ('"string"', -8142146995180207161),
    ],
)
def test_the_reference_rabin_matches_known_values(canonical: str, signed: int) -> None:
    assert rabin64(canonical.encode()) == signed % 2**64


@pytest.mark.parametrize("logical", sorted(SAMPLES))
def test_the_wire_starts_with_magic_and_the_little_endian_fingerprint(logical: str) -> None:
    latest = SCHEMAS.latest(logical)
    expected = rabin64(to_parsing_canonical_form(latest.schema).encode()).to_bytes(8, "little")
    wire = SCHEMAS.encode(logical, native(logical))
    assert wire[:2] == b"\xc3\x01" == MAGIC
    assert wire[2:HEADER_SIZE] == expected == latest.fingerprint
    assert SCHEMAS.by_fingerprint(expected) is latest


def test_fingerprints_are_unique_across_the_catalogue() -> None:
    versions = list(SCHEMAS)
    assert len({v.fingerprint for v in versions}) == len(versions)


# --- Decode errors ---------------------------------------------------------------------------


def reason(logical: str, data: bytes) -> str:
    with pytest.raises(DecodeError) as caught:
        SCHEMAS.decode(logical, data)
    return caught.value.reason


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc3",
        b"\xc3\x01\x00\x11\x22\x33\x44\x55\x66",  # one byte short of a header
        b"\x7b\x22eventId\x22: \x22x\x22\x7d",  # JSON, not Avro
        bytes(range(40)),
        b"\x01\xc3" + bytes(20),
    ],
)
def test_bytes_without_the_header_are_not_single_object_encoding(data: bytes) -> None:
    assert reason("declaration.lodged", data) == "not-single-object-encoding"


def test_an_unknown_fingerprint_is_reported() -> None:
    wire = SCHEMAS.encode("clock.tick", native("clock.tick"))
    unknown = MAGIC + bytes(8) + wire[HEADER_SIZE:]
    assert SCHEMAS.by_fingerprint(bytes(8)) is None
    assert reason("clock.tick", unknown) == "unknown-schema"
    with pytest.raises(DecodeError, match="unknown-schema"):
        SCHEMAS.decode_any(unknown)


def test_another_event_is_the_wrong_schema() -> None:
    wire = SCHEMAS.encode("clock.tick", native("clock.tick"))
    with pytest.raises(DecodeError) as caught:
        SCHEMAS.decode("declaration.lodged", wire)
    assert caught.value.reason == "wrong-schema"
    assert "clock.tick v1" in caught.value.detail


@pytest.mark.parametrize("cut", [1, 3, 10])
def test_a_truncated_body_is_malformed(cut: int) -> None:
    wire = SCHEMAS.encode("declaration.lodged", native("declaration.lodged"))
    assert reason("declaration.lodged", wire[:-cut]) == "malformed-body"


def test_a_header_without_a_body_is_malformed() -> None:
    assert reason("clock.tick", SCHEMAS.latest("clock.tick").header) == "malformed-body"


@pytest.mark.parametrize("extra", [b"\x00", b"trailing garbage"])
def test_trailing_bytes_are_malformed(extra: bytes) -> None:
    wire = SCHEMAS.encode("clock.tick", native("clock.tick"))
    with pytest.raises(DecodeError) as caught:
        SCHEMAS.decode("clock.tick", wire + extra)
    assert caught.value.reason == "malformed-body"
    assert f"{len(extra)} bytes left" in caught.value.detail


def test_invalid_utf8_in_a_string_is_malformed() -> None:
    wire = bytearray(SCHEMAS.encode("clock.tick", native("clock.tick")))
    wire[HEADER_SIZE + 1] = 0xFF  # first byte of eventId, after its length
    assert reason("clock.tick", bytes(wire)) == "malformed-body"


_HEADERS = [v.header for v in SCHEMAS]
_WIRES = [SCHEMAS.encode(logical, native(logical)) for logical in sorted(SAMPLES)]


def _corrupt(wire: bytes, position: int, byte: int) -> bytes:
    position %= len(wire)
    return wire[:position] + bytes([byte]) + wire[position + 1 :]


_BAD_BYTES = st.one_of(
    st.binary(max_size=64),
    st.builds(lambda h, body: h + body, st.sampled_from(_HEADERS), st.binary(max_size=64)),
    st.builds(
        _corrupt,
        st.sampled_from(_WIRES),
        st.integers(min_value=HEADER_SIZE, max_value=10_000),
        st.integers(min_value=0, max_value=255),
    ),
    st.builds(lambda w, n: w[:n], st.sampled_from(_WIRES), st.integers(0, 400)),
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=_BAD_BYTES, logical=st.sampled_from(sorted(SAMPLES)))
def test_arbitrary_bytes_raise_nothing_but_decode_error(data: bytes, logical: str) -> None:
    for decode in (lambda: SCHEMAS.decode(logical, data), lambda: SCHEMAS.decode_any(data)):
        try:
            decode()
        except DecodeError as error:
            assert error.reason in {
                "not-single-object-encoding",
                "unknown-schema",
                "wrong-schema",
                "malformed-body",
            }


# --- Values ----------------------------------------------------------------------------------


def _released(total_duty: Decimal, total_vat: Decimal) -> dict[str, Any]:
    record = native("declaration.released")
    record.update(totalDuty=total_duty, totalVat=total_vat)
    return SCHEMAS.decode("declaration.released", SCHEMAS.encode("declaration.released", record))


@pytest.mark.parametrize(
    "amount",
    ["5", "5.1", "0", "-0.01", "1234567890123456.78", "-9999999999999999.99", "0.10"],
)
def test_decimals_keep_their_value_and_come_back_at_the_schema_scale(amount: str) -> None:
    decoded = _released(Decimal(amount), Decimal(amount))
    for value in (decoded["totalDuty"], decoded["totalVat"]):
        assert value == Decimal(amount)
        assert value.as_tuple().exponent == -2


def test_masses_and_rates_keep_their_scale() -> None:
    decoded = SCHEMAS.decode(
        "declaration.lodged",
        SCHEMAS.encode("declaration.lodged", native("declaration.lodged")),
    )
    item = decoded["goodsItems"][1]
    assert str(item["netMass"]) == "0.125"
    assert item["grossMass"] is None
    assert str(decoded["goodsItems"][0]["grossMass"]) == "131.250"
    assert str(decoded["exchangeRate"]) == "0.921450"


def _ticked(instant: datetime) -> datetime:
    record = {"eventId": EVENT_ID, "occurredAt": instant}
    value = SCHEMAS.decode("clock.tick", SCHEMAS.encode("clock.tick", record))["occurredAt"]
    assert isinstance(value, datetime)
    return value


@pytest.mark.parametrize(
    "instant",
    [
        datetime(2026, 4, 1, 10, 20, 0, 123000, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 4, 1, 8, 20, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
        datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC),
    ],
)
def test_timestamps_come_back_as_the_same_utc_instant(instant: datetime) -> None:
    decoded = _ticked(instant)
    assert decoded == instant
    assert decoded.tzinfo is not None and decoded.utcoffset() == timedelta(0)
    assert decoded.microsecond % 1000 == 0


def test_timestamps_from_json_are_tz_aware_utc_milliseconds() -> None:
    record = from_json(
        SCHEMAS.latest("clock.tick").schema,
        {"eventId": EVENT_ID, "occurredAt": "2026-04-01T10:20:00.123+02:00"},
    )
    decoded = SCHEMAS.decode("clock.tick", SCHEMAS.encode("clock.tick", record))["occurredAt"]
    assert decoded.isoformat() == "2026-04-01T08:20:00.123000+00:00"


def test_a_timestamp_finer_than_a_millisecond_is_not_made_up() -> None:
    # The wire holds milliseconds: microseconds written by code are cut, never rounded up into
    # another millisecond.
    decoded = _ticked(datetime(2026, 4, 1, 8, 20, 0, 123999, tzinfo=UTC))
    assert decoded == datetime(2026, 4, 1, 8, 20, 0, 123000, tzinfo=UTC)


def test_the_catalogue_refuses_two_versions_with_one_canonical_form(tmp_path: Path) -> None:
    folder = tmp_path / "clock.tick"
    folder.mkdir()
    text = (ROOT / "schemas" / "clock.tick" / "v1.avsc").read_text()
    (folder / "v1.avsc").write_text(text)
    (folder / "v2.avsc").write_text(text.replace("Event-time tick", "A tick"))
    with pytest.raises(ValueError, match="same canonical form"):
        SchemaCatalogue(tmp_path)


# An acceptance carries its lodged declaration whole: the intake copies the input's bytes.
def _accepted(declaration: dict[str, Any]) -> dict[str, Any]:
    return {**native("declaration.accepted"), "declaration": declaration}


def test_an_embedded_input_is_copied_into_the_output_byte_for_byte() -> None:
    lodged = native("declaration.lodged")
    data = SCHEMAS.encode("declaration.lodged", lodged)
    received = SCHEMAS.decode("declaration.lodged", data)
    accepted = _accepted(received)
    spliced = SCHEMAS.encode(
        "declaration.accepted", accepted, Embedded("declaration", data, received)
    )
    assert spliced == SCHEMAS.encode("declaration.accepted", accepted)
    assert SCHEMAS.decode("declaration.accepted", spliced) == accepted
    assert spliced.endswith(data[HEADER_SIZE:])


def test_a_record_not_holding_the_embedded_value_is_encoded_as_it_is() -> None:
    lodged = native("declaration.lodged")
    data = SCHEMAS.encode("declaration.lodged", lodged)
    received = SCHEMAS.decode("declaration.lodged", data)
    changed = {**received, "lrn": "ANOTHER-LRN"}
    accepted = _accepted(changed)
    encoded = SCHEMAS.encode(
        "declaration.accepted", accepted, Embedded("declaration", data, received)
    )
    assert SCHEMAS.decode("declaration.accepted", encoded)["declaration"]["lrn"] == "ANOTHER-LRN"


def test_an_embedded_message_of_another_schema_is_not_copied() -> None:
    # The bytes of a rejection are no declaration: the value alone decides what is written.
    lodged = native("declaration.lodged")
    other = SCHEMAS.encode("declaration.rejected", native("declaration.rejected"))
    accepted = _accepted(lodged)
    encoded = SCHEMAS.encode(
        "declaration.accepted", accepted, Embedded("declaration", other, lodged)
    )
    assert SCHEMAS.decode("declaration.accepted", encoded) == accepted


@pytest.mark.parametrize("field_name", ["mrn", "eventId", "nowhere"])
def test_only_a_last_record_field_is_copied(field_name: str) -> None:
    # The notification and the acceptance's other fields are written as always.
    accepted = native("declaration.accepted")
    value = accepted.get(field_name)
    data = SCHEMAS.encode("clock.tick", native("clock.tick"))
    encoded = SCHEMAS.encode("declaration.accepted", accepted, Embedded(field_name, data, value))
    assert SCHEMAS.decode("declaration.accepted", encoded) == accepted


# The decision stage forwards the acceptance's declaration: it cuts the bytes from the input.
def test_the_last_field_of_a_message_is_cut_as_its_own_message() -> None:
    accepted = native("declaration.accepted")
    data = SCHEMAS.encode("declaration.accepted", accepted)
    received = SCHEMAS.decode("declaration.accepted", data)
    cut = SCHEMAS.last_field(data, "declaration", received["declaration"])
    assert cut is not None and cut.value is received["declaration"]
    assert SCHEMAS.decode("declaration.lodged", cut.data) == received["declaration"]
    forwarded = {**native("cop.forwarded"), "declaration": received["declaration"]}
    spliced = SCHEMAS.encode("cop.forwarded", forwarded, cut)
    assert spliced == SCHEMAS.encode("cop.forwarded", forwarded)


@pytest.mark.parametrize("field_name", ["mrn", "nowhere"])
def test_only_a_last_record_field_is_cut(field_name: str) -> None:
    data = SCHEMAS.encode("declaration.accepted", native("declaration.accepted"))
    assert SCHEMAS.last_field(data, field_name, None) is None
