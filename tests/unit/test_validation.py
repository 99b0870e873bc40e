"""Rules R010-R069 and R090 of spec §4: each rule passes and fails, and the full error list
(code, pointer) is asserted exactly, in the spec's order."""

from __future__ import annotations

import copy
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.reference import ReferenceData, load_reference
from streams.validation import RuleError, validate

Declaration = dict[str, Any]
Mutation = Callable[[Declaration], None]

# Luhn-valid SIRENs (checked in test_fixture_sirens_are_luhn_valid with an independent sum).
DECLARANT = "FR732829320"
IMPORTER = "FR552100554"
REPRESENTATIVE = "BE0123456789"
OTHER_FR = "FR552081317"


def _luhn_sum(digits: str) -> int:
    doubled = [int(d) * (2 if i % 2 else 1) for i, d in enumerate(reversed(digits))]
    return sum(n // 10 + n % 10 for n in doubled)


def _item(sequence: int, code: str, origin: str, amount: str) -> dict[str, Any]:
    return {
        "sequenceNumber": sequence,
        "commodityCode": code,
        "description": "Cotton T-shirts, knitted",
        "procedureCode": "4000",
        "countryOfOrigin": origin,
        "preference": "100",
        "netMass": Decimal("12.500"),
        "grossMass": Decimal("13.000"),
        "amountInvoiced": Decimal(amount),
    }


def valid_declaration() -> Declaration:
    items = [
        _item(1, "6109100010", "VN", "1200.00"),
        _item(2, "84713000", "CN", "899.99"),
        _item(3, "6403990000", "VN", "0.00"),
        _item(4, "8517130000", "KR", "15000.50"),
        _item(5, "4202210000", "VN", "10.01"),
    ]
    items[2]["preference"] = "300"
    items[3]["grossMass"] = None
    return {
        "eventId": "0f4c2a9e-6b1d-4c55-9a43-2d3c8f0a1b7e",
        "occurredAt": datetime(2026, 4, 1, 8, 20, tzinfo=UTC),
        "lrn": "LRN-2026-000001",
        "declarationType": "IM",
        "additionalDeclarationType": "A",
        "supervisingOffice": "FR000730",
        "presentationOffice": "DE004712",
        "declarant": {"eori": DECLARANT, "name": "Textiles du Nord SA"},
        "importer": {"eori": IMPORTER, "name": "Maison Import SARL"},
        "representative": {"eori": REPRESENTATIVE, "status": 2},
        "authorisation": {"type": "CCL", "reference": "FRCCL2026000042", "holderEori": DECLARANT},
        "currency": "USD",
        "exchangeRate": Decimal("0.921500"),
        "totalAmountInvoiced": sum((i["amountInvoiced"] for i in items), Decimal("0.00")),
        "goodsItems": items,
    }


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference()


@pytest.fixture
def declaration(reference: ReferenceData) -> Declaration:
    result = valid_declaration()
    for item in result["goodsItems"]:
        assert reference.tariff_line(item["commodityCode"]) is not None
    return result


def codes(errors: list[RuleError]) -> list[tuple[str, str]]:
    return [(e.code, e.pointer) for e in errors]


def _parent(declaration: Declaration, pointer: str) -> tuple[Any, str | int]:
    *path, last = pointer.lstrip("/").split("/")
    node: Any = declaration
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, int(last) if isinstance(node, list) else last


def at(pointer: str, value: Any) -> Mutation:
    def mutate(declaration: Declaration) -> None:
        node, key = _parent(declaration, pointer)
        node[key] = value

    return mutate


def rebalance(declaration: Declaration) -> None:
    """Keeps R052 quiet in cases about something else."""
    declaration["totalAmountInvoiced"] = sum(
        (i["amountInvoiced"] for i in declaration["goodsItems"]), Decimal("0.00")
    )


def items(count: int) -> Mutation:
    def mutate(declaration: Declaration) -> None:
        template = declaration["goodsItems"][0]
        declaration["goodsItems"] = [{**template, "sequenceNumber": n + 1} for n in range(count)]
        rebalance(declaration)

    return mutate


CASES = [
    # R010
    pytest.param([at("/lrn", "A" * 22)], [], id="R010-22-chars"),
    pytest.param([at("/lrn", "!~")], [], id="R010-edges"),
    pytest.param([at("/lrn", "")], [("R010", "/lrn")], id="R010-empty"),
    pytest.param([at("/lrn", "A" * 23)], [("R010", "/lrn")], id="R010-23-chars"),
    pytest.param([at("/lrn", "LRN 1")], [("R010", "/lrn")], id="R010-space"),
    pytest.param([at("/lrn", "LRNé")], [("R010", "/lrn")], id="R010-non-ascii"),
    pytest.param([at("/lrn", "LRN\n")], [("R010", "/lrn")], id="R010-trailing-newline"),
    # R011, R012
    pytest.param([at("/declarationType", "EX")], [("R011", "/declarationType")], id="R011"),
    pytest.param([at("/additionalDeclarationType", "D")], [], id="R012-pre-lodged"),
    pytest.param(
        [at("/additionalDeclarationType", "B")], [("R012", "/additionalDeclarationType")], id="R012"
    ),
    # R020, R021
    pytest.param([at("/importer/eori", "DE123456789012345")], [], id="R020-DE-15-chars"),
    pytest.param(
        [at("/importer/eori", "DE1234567890123456")], [("R020", "/importer/eori")], id="R020-16"
    ),
    pytest.param([at("/importer/eori", "XX123456")], [("R020", "/importer/eori")], id="R020-XX"),
    pytest.param([at("/importer/eori", "fr552100554")], [("R020", "/importer/eori")], id="R020-lc"),
    pytest.param([at("/importer/eori", "FR")], [("R020", "/importer/eori")], id="R020-no-id"),
    pytest.param(
        [at("/representative/eori", "B")], [("R020", "/representative/eori")], id="R020-rep"
    ),
    pytest.param([at("/representative", None)], [], id="R020-R032-no-representative"),
    pytest.param(
        [at("/declarant/eori", "FR73282932000017"), at("/authorisation/holderEori", IMPORTER)],
        [("R021", "/declarant/eori")],
        id="R021-SIRET",
    ),
    pytest.param(
        [at("/declarant/eori", "FR73282932000017")],
        [("R021", "/declarant/eori"), ("R031", "/authorisation/holderEori")],
        id="R021-SIRET-holder-mismatch",
    ),
    pytest.param(
        [
            at("/declarant/eori", "FR73282932000017"),
            at("/authorisation/holderEori", "FR73282932000017"),
        ],
        [("R021", "/authorisation/holderEori"), ("R021", "/declarant/eori")],
        id="R021-SIRET-twice",
    ),
    pytest.param(
        [at("/importer/eori", "FR123456789")], [("R021", "/importer/eori")], id="R021-luhn"
    ),
    pytest.param([at("/importer/eori", "FR12345678")], [("R021", "/importer/eori")], id="R021-8"),
    pytest.param(
        [at("/importer/eori", "FR" + "1" * 16)],
        [("R020", "/importer/eori"), ("R021", "/importer/eori")],
        id="R020-R021-both",
    ),
    pytest.param([at("/importer/eori", "FR12345678A")], [], id="R021-not-only-digits"),
    pytest.param([at("/importer/eori", OTHER_FR)], [], id="R021-other-siren"),
    # R030, R031, R032
    pytest.param([at("/authorisation/type", "CCA")], [("R030", "/authorisation/type")], id="R030"),
    pytest.param(
        [at("/authorisation/reference", "")], [("R030", "/authorisation/reference")], id="R030-ref"
    ),
    pytest.param([at("/authorisation/reference", " ")], [], id="R030-ref-space-is-non-empty"),
    pytest.param(
        [at("/authorisation/type", ""), at("/authorisation/reference", "")],
        [("R030", "/authorisation/reference"), ("R030", "/authorisation/type")],
        id="R030-both",
    ),
    pytest.param([at("/authorisation/holderEori", IMPORTER)], [], id="R031-holder-importer"),
    pytest.param(
        [at("/authorisation/holderEori", OTHER_FR)],
        [("R031", "/authorisation/holderEori")],
        id="R031-third-party",
    ),
    pytest.param(
        [at("/authorisation/holderEori", REPRESENTATIVE)],
        [("R031", "/authorisation/holderEori")],
        id="R031-representative-is-not-enough",
    ),
    pytest.param([at("/representative/status", 3)], [], id="R032-indirect"),
    pytest.param(
        [at("/representative/status", 1)], [("R032", "/representative/status")], id="R032-1"
    ),
    # R040, R041, R042
    pytest.param(
        [at("/supervisingOffice", "DE000730")],
        [("R040", "/supervisingOffice"), ("R042", "/presentationOffice")],
        id="R040-foreign-office",
    ),
    pytest.param(
        [at("/supervisingOffice", "fr000730")], [("R040", "/supervisingOffice")], id="R040-lc"
    ),
    pytest.param(
        [at("/supervisingOffice", "FR00073")], [("R040", "/supervisingOffice")], id="R040-short"
    ),
    pytest.param([at("/presentationOffice", "BE0A4712")], [], id="R041-alnum"),
    pytest.param(
        [at("/presentationOffice", "CH001234")], [("R041", "/presentationOffice")], id="R041-CH"
    ),
    pytest.param(
        [at("/presentationOffice", "DE00471")], [("R041", "/presentationOffice")], id="R041-short"
    ),
    pytest.param(
        [at("/presentationOffice", "FR001234")], [("R042", "/presentationOffice")], id="R042"
    ),
    # R050, R051, R052
    pytest.param([at("/currency", "ABC")], [("R050", "/currency")], id="R050"),
    pytest.param([at("/currency", "usd")], [("R050", "/currency")], id="R050-lc"),
    pytest.param(
        [at("/currency", "ABC"), at("/exchangeRate", None)],
        [("R050", "/currency"), ("R051", "/exchangeRate")],
        id="R050-R051-both",
    ),
    pytest.param([at("/exchangeRate", None)], [("R051", "/exchangeRate")], id="R051-USD-none"),
    pytest.param([at("/exchangeRate", Decimal(0))], [("R051", "/exchangeRate")], id="R051-USD-0"),
    pytest.param(
        [at("/exchangeRate", Decimal("-0.5"))], [("R051", "/exchangeRate")], id="R051-USD-neg"
    ),
    pytest.param([at("/currency", "EUR"), at("/exchangeRate", None)], [], id="R051-EUR-absent"),
    pytest.param(
        [at("/currency", "EUR"), at("/exchangeRate", Decimal("1.000000"))], [], id="R051-EUR-1"
    ),
    pytest.param(
        [at("/currency", "EUR"), at("/exchangeRate", Decimal("0.921500"))],
        [("R051", "/exchangeRate")],
        id="R051-EUR-rate",
    ),
    pytest.param(
        [lambda d: d.update(totalAmountInvoiced=d["totalAmountInvoiced"] + Decimal("0.01"))],
        [("R052", "/totalAmountInvoiced")],
        id="R052-off-by-a-cent",
    ),
    pytest.param(
        [lambda d: d.update(totalAmountInvoiced=d["totalAmountInvoiced"] - Decimal("0.01"))],
        [("R052", "/totalAmountInvoiced")],
        id="R052-short-by-a-cent",
    ),
    pytest.param(
        [at("/goodsItems/0/amountInvoiced", Decimal("1200.01"))],
        [("R052", "/totalAmountInvoiced")],
        id="R052-item-changed",
    ),
    pytest.param([at("/totalAmountInvoiced", Decimal("17110.5"))], [], id="R052-compares-values"),
    # R060, R061
    pytest.param([items(1)], [], id="R060-1-item"),
    pytest.param([items(999)], [], id="R060-999-items"),
    pytest.param([items(0)], [("R060", "/goodsItems")], id="R060-no-items"),
    pytest.param([items(1000)], [("R060", "/goodsItems")], id="R060-1000-items"),
    pytest.param(
        [items(1000), at("/goodsItems/999/commodityCode", "7701000000")],
        [
            ("R060", "/goodsItems"),
            ("R062", "/goodsItems/999/commodityCode"),
            ("R069", "/goodsItems/999/commodityCode"),
        ],
        id="R060-items-still-checked",
    ),
    pytest.param(
        [at("/goodsItems/1/sequenceNumber", 3), at("/goodsItems/2/sequenceNumber", 2)],
        [("R061", "/goodsItems/1/sequenceNumber"), ("R061", "/goodsItems/2/sequenceNumber")],
        id="R061-swapped",
    ),
    pytest.param(
        [at("/goodsItems/0/sequenceNumber", 0)],
        [("R061", "/goodsItems/0/sequenceNumber")],
        id="R061-zero-based",
    ),
    # R062, R069
    pytest.param([at("/goodsItems/1/commodityCode", "84713000")], [], id="R062-8-digits"),
    pytest.param(
        [at("/goodsItems/1/commodityCode", "7701000000")],
        [("R062", "/goodsItems/1/commodityCode"), ("R069", "/goodsItems/1/commodityCode")],
        id="R062-chapter-77",
    ),
    pytest.param(
        [at("/goodsItems/1/commodityCode", "0001000000")],
        [("R062", "/goodsItems/1/commodityCode"), ("R069", "/goodsItems/1/commodityCode")],
        id="R062-chapter-00",
    ),
    pytest.param(
        [at("/goodsItems/1/commodityCode", "9801000000")],
        [("R062", "/goodsItems/1/commodityCode"), ("R069", "/goodsItems/1/commodityCode")],
        id="R062-chapter-98",
    ),
    pytest.param(
        [at("/goodsItems/1/commodityCode", "847130001")],
        [("R062", "/goodsItems/1/commodityCode")],
        id="R062-9-digits-with-a-tariff-line",
    ),
    pytest.param(
        [at("/goodsItems/1/commodityCode", "٠١٢٣٤٥٦٧")],
        [("R062", "/goodsItems/1/commodityCode"), ("R069", "/goodsItems/1/commodityCode")],
        id="R062-arabic-indic-digits",
    ),
    pytest.param(
        [at("/goodsItems/1/commodityCode", "84713000\n")],
        [("R062", "/goodsItems/1/commodityCode")],
        id="R062-trailing-newline",
    ),
    pytest.param(
        [at("/goodsItems/1/commodityCode", "8501100000")],
        [("R069", "/goodsItems/1/commodityCode")],
        id="R069-no-tariff-line",
    ),
    # R063
    pytest.param([at("/goodsItems/0/procedureCode", "7100")], [], id="R063-71"),
    pytest.param([at("/goodsItems/0/procedureCode", "4271")], [], id="R063-42"),
    pytest.param(
        [at("/goodsItems/0/procedureCode", "1000")],
        [("R063", "/goodsItems/0/procedureCode")],
        id="R063-export",
    ),
    pytest.param(
        [at("/goodsItems/0/procedureCode", "400")],
        [("R063", "/goodsItems/0/procedureCode")],
        id="R063-3-digits",
    ),
    pytest.param(
        [at("/goodsItems/0/procedureCode", "٤٠٠٠")],
        [("R063", "/goodsItems/0/procedureCode")],
        id="R063-arabic-indic-digits",
    ),
    # R064
    pytest.param(
        [at("/goodsItems/4/countryOfOrigin", "XX")],
        [("R064", "/goodsItems/4/countryOfOrigin")],
        id="R064-XX",
    ),
    pytest.param(
        [at("/goodsItems/4/countryOfOrigin", "vn")],
        [("R064", "/goodsItems/4/countryOfOrigin")],
        id="R064-lc",
    ),
    # R065
    pytest.param([at("/goodsItems/0/grossMass", Decimal("12.500"))], [], id="R065-gross-eq-net"),
    pytest.param([at("/goodsItems/0/grossMass", None)], [], id="R065-gross-absent"),
    pytest.param(
        [at("/goodsItems/3/netMass", Decimal("0.000"))],
        [("R065", "/goodsItems/3/netMass")],
        id="R065-net-0",
    ),
    pytest.param(
        [at("/goodsItems/0/grossMass", Decimal("12.499"))],
        [("R065", "/goodsItems/0/grossMass")],
        id="R065-gross-lt-net",
    ),
    pytest.param(
        [
            at("/goodsItems/0/netMass", Decimal("-1.000")),
            at("/goodsItems/0/grossMass", Decimal("-2.000")),
        ],
        [("R065", "/goodsItems/0/grossMass"), ("R065", "/goodsItems/0/netMass")],
        id="R065-both",
    ),
    # R066
    pytest.param(
        [at("/goodsItems/2/amountInvoiced", Decimal("-0.01")), rebalance],
        [("R066", "/goodsItems/2/amountInvoiced")],
        id="R066-negative",
    ),
    # R067
    pytest.param([at("/goodsItems/0/description", "x" * 512)], [], id="R067-512"),
    pytest.param([at("/goodsItems/0/description", "𝄞" * 512)], [], id="R067-code-points"),
    pytest.param(
        [at("/goodsItems/0/description", "")],
        [("R067", "/goodsItems/0/description")],
        id="R067-empty",
    ),
    pytest.param(
        [at("/goodsItems/0/description", "x" * 513)],
        [("R067", "/goodsItems/0/description")],
        id="R067-513",
    ),
    # R068
    pytest.param([at("/goodsItems/0/preference", "200")], [], id="R068-200"),
    pytest.param(
        [at("/goodsItems/0/preference", "400")],
        [("R068", "/goodsItems/0/preference")],
        id="R068-400",
    ),
]


def test_valid_declaration_passes(declaration: Declaration, reference: ReferenceData) -> None:
    assert validate(declaration, reference, "FR") == []


def test_fixture_sirens_are_luhn_valid() -> None:
    for eori in (DECLARANT, IMPORTER, OTHER_FR):
        assert _luhn_sum(eori[2:]) % 10 == 0
    assert _luhn_sum("123456789") % 10 != 0


@pytest.mark.parametrize(("mutations", "expected"), CASES)
def test_rule(
    declaration: Declaration,
    reference: ReferenceData,
    mutations: list[Mutation],
    expected: list[tuple[str, str]],
) -> None:
    for mutate in mutations:
        mutate(declaration)
    assert codes(validate(declaration, reference, "FR")) == expected


def test_r040_uses_the_node_country(declaration: Declaration, reference: ReferenceData) -> None:
    assert codes(validate(declaration, reference, "DE")) == [
        ("R040", "/supervisingOffice"),
    ]
    declaration["supervisingOffice"] = "BE000730"
    assert validate(declaration, reference, "BE") == []


def test_r090_already_accepted(declaration: Declaration, reference: ReferenceData) -> None:
    assert codes(validate(declaration, reference, "FR", already_accepted=True)) == [
        ("R090", "/lrn")
    ]
    assert validate(declaration, reference, "FR", already_accepted=False) == []


def test_many_failures_sorted_by_code_then_pointer(
    declaration: Declaration, reference: ReferenceData
) -> None:
    declaration["lrn"] = ""
    declaration["importer"]["eori"] = "FR73282932000017"
    declaration["currency"] = "EUR"
    declaration["goodsItems"][4]["preference"] = "999"
    declaration["goodsItems"][1]["commodityCode"] = "7700000000"
    declaration["goodsItems"][0]["netMass"] = Decimal(0)
    declaration["presentationOffice"] = "FR004712"
    errors = validate(declaration, reference, "FR", already_accepted=True)
    assert codes(errors) == [
        ("R010", "/lrn"),
        ("R021", "/importer/eori"),
        ("R042", "/presentationOffice"),
        ("R051", "/exchangeRate"),
        ("R062", "/goodsItems/1/commodityCode"),
        ("R065", "/goodsItems/0/netMass"),
        ("R068", "/goodsItems/4/preference"),
        ("R069", "/goodsItems/1/commodityCode"),
        ("R090", "/lrn"),
    ]


def test_pointer_order_is_plain_string_order(
    declaration: Declaration, reference: ReferenceData
) -> None:
    items(11)(declaration)
    declaration["goodsItems"][2]["commodityCode"] = "0000000000"
    declaration["goodsItems"][10]["commodityCode"] = "9900000000"
    declaration["goodsItems"][2]["countryOfOrigin"] = "ZZ"
    assert codes(validate(declaration, reference, "FR")) == [
        ("R062", "/goodsItems/10/commodityCode"),
        ("R062", "/goodsItems/2/commodityCode"),
        ("R064", "/goodsItems/2/countryOfOrigin"),
        ("R069", "/goodsItems/10/commodityCode"),
        ("R069", "/goodsItems/2/commodityCode"),
    ]


def test_error_shape_and_message(declaration: Declaration, reference: ReferenceData) -> None:
    declaration["goodsItems"][1]["commodityCode"] = "7701000000"
    errors = validate(declaration, reference, "FR")
    assert errors[0].as_dict() == {
        "code": "R062",
        "pointer": "/goodsItems/1/commodityCode",
        "message": "commodityCode 7701000000: HS chapter 77 is not used",
    }
    assert all(e.message and "\n" not in e.message for e in errors)


def test_message_escapes_and_shortens_wild_values(
    declaration: Declaration, reference: ReferenceData
) -> None:
    declaration["lrn"] = "\ud800" + "x" * 10_000
    (error,) = validate(declaration, reference, "FR")
    error.message.encode("utf-8")
    assert len(error.message) < 200


def test_input_is_not_modified(declaration: Declaration, reference: ReferenceData) -> None:
    declaration["goodsItems"][0]["sequenceNumber"] = 7
    before = copy.deepcopy(declaration)
    validate(declaration, reference, "FR")
    assert declaration == before


_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.fixed_dictionaries(
        {
            key: _ANY_TEXT
            for key in (
                "lrn",
                "declarationType",
                "additionalDeclarationType",
                "supervisingOffice",
                "presentationOffice",
                "currency",
            )
        }
    ),
    eoris=st.lists(_ANY_TEXT, min_size=4, max_size=4),
    authorisation=st.tuples(_ANY_TEXT, _ANY_TEXT),
    item_texts=st.lists(
        st.fixed_dictionaries(
            {
                key: _ANY_TEXT
                for key in (
                    "commodityCode",
                    "description",
                    "procedureCode",
                    "countryOfOrigin",
                    "preference",
                )
            }
        ),
        max_size=6,
    ),
    country=_ANY_TEXT,
    already_accepted=st.booleans(),
)
def test_validate_never_raises_on_arbitrary_strings(
    reference: ReferenceData,
    header: dict[str, str],
    eoris: list[str],
    authorisation: tuple[str, str],
    item_texts: list[dict[str, str]],
    country: str,
    already_accepted: bool,
) -> None:
    declaration = valid_declaration()
    declaration.update(header)
    declaration["declarant"]["eori"] = eoris[0]
    declaration["importer"]["eori"] = eoris[1]
    declaration["representative"]["eori"] = eoris[2]
    declaration["authorisation"].update(
        holderEori=eoris[3], type=authorisation[0], reference=authorisation[1]
    )
    template = declaration["goodsItems"][0]
    declaration["goodsItems"] = [
        {**template, **texts, "sequenceNumber": n + 1} for n, texts in enumerate(item_texts)
    ]
    rebalance(declaration)

    errors = validate(declaration, reference, country, already_accepted)

    assert codes(errors) == sorted(codes(errors))
    for error in errors:
        assert error.pointer.startswith("/")
        error.message.encode("utf-8")
    if already_accepted:
        assert ("R090", "/lrn") in codes(errors)
