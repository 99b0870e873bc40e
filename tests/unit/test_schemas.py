"""The committed schemas against the contract (spec §2-§3), their evolution rules, and the lock that
keeps published versions unedited."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_writer

from streams.codec import SchemaCatalogue, catalogue
from streams.compat import (
    LOCK_NAME,
    backward_problems,
    check_catalogue,
    lock_new_versions,
    lock_problems,
)
from streams.config import ROOT
from streams.jsonform import from_json
from streams.topics import DEAD_LETTER, EVENTS

SCHEMAS = ROOT / "schemas"

# Spec §2, §3, §6, §8, §9: name -> (precision, scale), wherever the field appears.
DECIMAL_FIELDS = {
    "totalAmountInvoiced": (18, 2),
    "amountInvoiced": (18, 2),
    "totalDuty": (18, 2),
    "totalVat": (18, 2),
    "customsValueEur": (18, 2),
    "duty": (18, 2),
    "vat": (18, 2),
    "netMass": (18, 3),
    "grossMass": (18, 3),
    "exchangeRate": (18, 6),
}

LODGED_FIELDS = [
    "eventId",
    "occurredAt",
    "lrn",
    "declarationType",
    "additionalDeclarationType",
    "supervisingOffice",
    "presentationOffice",
    "declarant",
    "importer",
    "representative",
    "authorisation",
    "currency",
    "exchangeRate",
    "totalAmountInvoiced",
    "goodsItems",
]
NESTED_FIELDS = {
    "cci.events.Party": ["eori", "name"],
    "cci.events.Representative": ["eori", "status"],
    "cci.events.Authorisation": ["type", "reference", "holderEori"],
    "cci.events.GoodsItem": [
        "sequenceNumber",
        "commodityCode",
        "description",
        "procedureCode",
        "countryOfOrigin",
        "preference",
        "netMass",
        "grossMass",
        "amountInvoiced",
    ],
}


@pytest.fixture(scope="module")
def schemas() -> SchemaCatalogue:
    return catalogue(SCHEMAS)


def parse(schema: Any) -> Any:
    return parse_schema(schema, _write_hint=False)


def record(name: str, *fields: dict[str, Any]) -> Any:
    return parse({"type": "record", "name": name, "namespace": "t", "fields": list(fields)})


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def decimal(precision: int, scale: int) -> dict[str, Any]:
    return {"type": "bytes", "logicalType": "decimal", "precision": precision, "scale": scale}


def walk_fields(schema: Any) -> Iterator[dict[str, Any]]:
    """Every field of every record of a parsed schema (named types are inlined once)."""
    if isinstance(schema, list):
        for branch in schema:
            yield from walk_fields(branch)
    elif isinstance(schema, dict):
        if schema.get("type") == "record":
            for f in schema["fields"]:
                yield f
                yield from walk_fields(f["type"])
        for key in ("items", "values"):
            if key in schema:
                yield from walk_fields(schema[key])


def non_null(type_: Any) -> Any:
    if isinstance(type_, list):
        (branch,) = (b for b in type_ if b != "null")
        return branch
    return type_


def records(schema: Any) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if isinstance(schema, dict) and schema.get("type") == "record":
        found[schema["name"]] = schema
    for f in walk_fields(schema):
        t = non_null(f["type"])
        t = t.get("items", t) if isinstance(t, dict) else t
        if isinstance(t, dict) and t.get("type") == "record":
            found[t["name"]] = t
    return found


# --- The committed catalogue ----------------------------------------------------------------


def test_latest_versions_read_every_earlier_version(schemas: SchemaCatalogue) -> None:
    assert check_catalogue(schemas) == []


def test_every_committed_version_matches_the_lock(schemas: SchemaCatalogue) -> None:
    assert lock_problems(schemas, SCHEMAS / LOCK_NAME) == []


def test_every_event_has_a_schema(schemas: SchemaCatalogue) -> None:
    assert set(schemas.logical_names()) == {*EVENTS, DEAD_LETTER}


def test_every_event_carries_event_id_and_occurred_at(schemas: SchemaCatalogue) -> None:
    for version in schemas:
        fields = {f["name"]: f["type"] for f in version.schema["fields"]}
        assert fields["eventId"] == "string", version.path
        assert fields["occurredAt"] == {"type": "long", "logicalType": "timestamp-millis"}, (
            version.path
        )


def test_money_masses_and_rates_have_the_contract_decimals(schemas: SchemaCatalogue) -> None:
    seen: set[str] = set()
    for version in schemas:
        for f in walk_fields(version.schema):
            if f["name"] in DECIMAL_FIELDS:
                precision, scale = DECIMAL_FIELDS[f["name"]]
                assert non_null(f["type"]) == decimal(precision, scale), (version.path, f["name"])
                seen.add(f["name"])
    assert seen == set(DECIMAL_FIELDS)  # a renamed field must not slip past the walk


def test_declaration_lodged_has_exactly_the_spec_fields(schemas: SchemaCatalogue) -> None:
    schema = schemas.latest("declaration.lodged").schema
    assert schema["name"] == "cci.events.DeclarationLodged"
    assert [f["name"] for f in schema["fields"]] == LODGED_FIELDS
    nested = records(schema)
    for name, names in NESTED_FIELDS.items():
        assert [f["name"] for f in nested[name]["fields"]] == names, name


@pytest.mark.parametrize("logical", ["declaration.accepted", "cop.forwarded"])
def test_embedded_declarations_are_the_lodged_contract(
    schemas: SchemaCatalogue, logical: str
) -> None:
    fields = {f["name"]: f["type"] for f in schemas.latest(logical).schema["fields"]}
    assert fields["declaration"] == schemas.latest("declaration.lodged").schema


# --- Synthetic evolution cases: (reader = new version, writer = old version) ----------------

BASE = [field("id", "string"), field("count", "int")]


def test_identical_schemas_are_compatible() -> None:
    assert backward_problems(record("R", *BASE), record("R", *BASE)) == []


def test_adding_a_field_with_a_default_is_compatible() -> None:
    new = record("R", *BASE, field("note", ["null", "string"], default=None))
    assert backward_problems(new, record("R", *BASE)) == []


def test_adding_a_field_without_a_default_is_a_problem() -> None:
    new = record("R", *BASE, field("note", "string"))
    assert backward_problems(new, record("R", *BASE)) == [
        "R.note: new reader field without a default"
    ]


def test_removing_a_field_is_compatible() -> None:
    assert backward_problems(record("R", BASE[0]), record("R", *BASE)) == []


def test_a_reader_field_alias_finds_the_renamed_field() -> None:
    new = record("R", BASE[0], field("total", "int", aliases=["count"]))
    assert backward_problems(new, record("R", *BASE)) == []


def test_int_to_long_is_a_promotion() -> None:
    new = record("R", BASE[0], field("count", "long"))
    assert backward_problems(new, record("R", *BASE)) == []


def test_long_to_int_is_a_problem() -> None:
    old = record("R", BASE[0], field("count", "long"))
    assert backward_problems(record("R", *BASE), old) == [
        "R.count: writer long cannot be read as int"
    ]


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_the_other_promotions(writer: str, reader: str) -> None:
    assert backward_problems(reader, writer) == []
    if {writer, reader} != {"string", "bytes"}:  # the one promotion that works both ways
        assert backward_problems(writer, reader) == [
            f"{writer}: writer {reader} cannot be read as {writer}"
        ]


def _enum(*symbols: str, **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Colour", "symbols": list(symbols), **extra}


def test_adding_an_enum_symbol_is_compatible() -> None:
    new = record("R", field("c", _enum("RED", "GREEN", "BLUE")))
    assert backward_problems(new, record("R", field("c", _enum("RED", "GREEN")))) == []


def test_removing_an_enum_symbol_is_a_problem() -> None:
    new = record("R", field("c", _enum("RED")))
    assert backward_problems(new, record("R", field("c", _enum("RED", "GREEN")))) == [
        "R.c: writer symbols GREEN of enum t.Colour are not in the reader,"
        " whose enum has no default"
    ]


def test_removing_an_enum_symbol_is_compatible_when_the_reader_has_a_default() -> None:
    new = record("R", field("c", _enum("RED", "OTHER", default="OTHER")))
    assert backward_problems(new, record("R", field("c", _enum("RED", "GREEN")))) == []


def test_a_decimal_scale_change_is_a_problem() -> None:
    new = record("R", field("amount", decimal(18, 3)))
    assert backward_problems(new, record("R", field("amount", decimal(18, 2)))) == [
        "R.amount: writer bytes(decimal 18,2) cannot be read as decimal 18,3"
    ]


def test_a_decimal_precision_change_is_a_problem() -> None:
    new = record("R", field("amount", decimal(20, 2)))
    assert backward_problems(new, record("R", field("amount", decimal(18, 2)))) == [
        "R.amount: writer bytes(decimal 18,2) cannot be read as decimal 20,2"
    ]


def test_a_change_of_logical_type_is_a_problem() -> None:
    millis = {"type": "long", "logicalType": "timestamp-millis"}
    assert backward_problems(
        record("R", field("at", "long")), record("R", field("at", millis))
    ) == ["R.at: writer long(timestamp-millis) cannot be read as long: the logical type changed"]
    assert backward_problems(
        record("R", field("at", millis)), record("R", field("at", "long"))
    ) == ["R.at: writer long cannot be read as long(timestamp-millis): the logical type changed"]


def test_a_renamed_record_is_a_problem() -> None:
    assert backward_problems(record("S", *BASE), record("R", *BASE)) == [
        "S: writer record t.R cannot be read as record t.S: the names differ and no reader alias"
        " is t.R"
    ]


def test_a_renamed_record_with_an_alias_is_compatible() -> None:
    new = parse({"type": "record", "name": "S", "namespace": "t", "aliases": ["R"], "fields": BASE})
    assert backward_problems(new, record("R", *BASE)) == []


def test_an_optional_field_made_required_is_a_problem() -> None:
    old = record("R", field("note", ["null", "string"], default=None))
    assert backward_problems(record("R", field("note", "string")), old) == [
        "R.note: writer null cannot be read as string"
    ]


def test_a_required_field_made_optional_is_compatible() -> None:
    new = record("R", field("note", ["null", "string"], default=None))
    assert backward_problems(new, record("R", field("note", "string"))) == []


def test_a_type_that_no_union_branch_reads_is_a_problem() -> None:
    new = record("R", field("note", ["null", "int"], default=None))
    assert backward_problems(new, record("R", field("note", "string"))) == [
        "R.note: writer string cannot be read as union[null, int]: no branch matches"
    ]


def test_a_nested_change_is_reported_with_its_path() -> None:
    def declaration(net_mass: dict[str, Any]) -> Any:
        item = {"type": "record", "name": "GoodsItem", "fields": [field("netMass", net_mass)]}
        items = field("goodsItems", {"type": "array", "items": item})
        return parse(
            {"type": "record", "name": "DeclarationLodged", "namespace": "t", "fields": [items]}
        )

    assert backward_problems(declaration(decimal(18, 2)), declaration(decimal(18, 3))) == [
        "DeclarationLodged.goodsItems[].netMass: writer bytes(decimal 18,3) cannot be read as"
        " decimal 18,2"
    ]


def test_a_change_inside_an_optional_record_and_a_map_is_reported_with_its_path() -> None:
    def schema(count: str) -> Any:
        inner = {"type": "record", "name": "Inner", "fields": [field("count", count)]}
        values = {"type": "map", "values": inner}
        return record("R", field("inner", ["null", values], default=None))

    assert backward_problems(schema("int"), schema("long")) == [
        "R.inner{}.count: writer long cannot be read as int"
    ]


def test_named_types_referenced_by_name_are_resolved_on_each_side() -> None:
    def schema(status: str) -> Any:
        party = {"type": "record", "name": "Party", "fields": [field("status", status)]}
        return record("R", field("declarant", party), field("importer", "t.Party"))

    assert backward_problems(schema("long"), schema("int")) == []
    # Both uses of the type are reported: each is a field a reader would fail on.
    assert backward_problems(schema("int"), schema("long")) == [
        "R.declarant.status: writer long cannot be read as int",
        "R.importer.status: writer long cannot be read as int",
    ]


def test_a_writer_only_field_may_define_a_type_used_later() -> None:
    colour = _enum("RED")
    old = record("R", field("first", colour), field("second", "t.Colour"))
    new = record("R", field("second", colour))
    assert backward_problems(new, old) == []


def test_recursive_types_terminate() -> None:
    def node(value: str) -> Any:
        return parse(
            {
                "type": "record",
                "name": "Node",
                "namespace": "t",
                "fields": [
                    field("value", value),
                    field("next", ["null", "t.Node"], default=None),
                ],
            }
        )

    assert backward_problems(node("long"), node("int")) == []
    assert backward_problems(node("int"), node("long")) == [
        "Node.value: writer long cannot be read as int"
    ]


def test_fixed_must_keep_name_and_size() -> None:
    def schema(size: int) -> Any:
        return record("R", field("h", {"type": "fixed", "name": "Hash", "size": size}))

    assert backward_problems(schema(16), schema(16)) == []
    assert backward_problems(schema(32), schema(16)) == [
        "R.h: writer fixed t.Hash[16] cannot be read as fixed t.Hash[32]: the sizes differ"
    ]


def test_a_writer_union_needs_every_branch_readable() -> None:
    old = record("R", field("v", ["null", "int", "string"]))
    assert backward_problems(record("R", field("v", ["null", "long", "string"])), old) == []
    assert backward_problems(record("R", field("v", ["null", "long"])), old) == [
        "R.v: writer string cannot be read as union[null, long]: no branch matches"
    ]


# --- Evolution end to end, on a copy of the committed schemas --------------------------------


def _lodged_v1_json() -> dict[str, Any]:
    return {
        "eventId": "7f1c2f4e-8f7a-4c55-9d43-2b1c6a0e9a11",
        "occurredAt": "2026-04-01T08:20:00.000Z",
        "lrn": "LRN-0001",
        "declarationType": "IM",
        "additionalDeclarationType": "A",
        "supervisingOffice": "FR000730",
        "presentationOffice": "DE004712",
        "declarant": {"eori": "FR732829320", "name": "Soieries Lyonnaises"},
        "importer": {"eori": "FR732829320", "name": "Soieries Lyonnaises"},
        "authorisation": {"type": "CCL", "reference": "FRCCL0001", "holderEori": "FR732829320"},
        "currency": "EUR",
        "totalAmountInvoiced": "1250.00",
        "goodsItems": [
            {
                "sequenceNumber": 1,
                "commodityCode": "5007209000",
                "description": "Silk fabric",
                "procedureCode": "4000",
                "countryOfOrigin": "CN",
                "preference": "100",
                "netMass": "12.500",
                "amountInvoiced": "1250.00",
            }
        ],
    }


def _publish_v2(tmp_path: Path, edit: Any) -> SchemaCatalogue:
    directory = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, directory)
    folder = directory / "declaration.lodged"
    schema = json.loads((folder / "v1.avsc").read_text())
    edit(schema)
    (folder / "v2.avsc").write_text(json.dumps(schema, indent=2))
    return SchemaCatalogue(directory)


def _encode_v1(schemas: SchemaCatalogue, value: dict[str, Any]) -> bytes:
    v1 = schemas.versions("declaration.lodged")[0]
    buffer = io.BytesIO()
    buffer.write(v1.header)
    schemaless_writer(buffer, v1.schema, from_json(v1.schema, value))
    return buffer.getvalue()


def test_a_v2_with_a_new_optional_field_reads_v1_messages(tmp_path: Path) -> None:
    def add_note(schema: dict[str, Any]) -> None:
        schema["fields"].append(
            {"name": "customsProcedureNote", "type": ["null", "string"], "default": None}
        )

    schemas = _publish_v2(tmp_path, add_note)
    assert [v.version for v in schemas.versions("declaration.lodged")] == [1, 2]
    assert check_catalogue(schemas) == []

    decoded = schemas.decode("declaration.lodged", _encode_v1(schemas, _lodged_v1_json()))
    assert decoded["customsProcedureNote"] is None
    assert decoded["goodsItems"][0]["netMass"] == Decimal("12.500")
    assert decoded["lrn"] == "LRN-0001"
    # The new version is what the catalogue writes from now on.
    with_note = {**decoded, "customsProcedureNote": "returned goods"}
    assert schemas.encode("declaration.lodged", with_note)[2:10] == (
        schemas.latest("declaration.lodged").fingerprint
    )


def test_a_v2_without_a_required_field_still_reads_v1(tmp_path: Path) -> None:
    def drop_currency(schema: dict[str, Any]) -> None:
        schema["fields"] = [f for f in schema["fields"] if f["name"] != "currency"]

    schemas = _publish_v2(tmp_path, drop_currency)
    assert check_catalogue(schemas) == []
    decoded = schemas.decode("declaration.lodged", _encode_v1(schemas, _lodged_v1_json()))
    assert "currency" not in decoded


def test_a_v2_with_a_new_required_field_is_reported(tmp_path: Path) -> None:
    def add_required(schema: dict[str, Any]) -> None:
        schema["fields"].append({"name": "customsProcedureNote", "type": "string"})

    schemas = _publish_v2(tmp_path, add_required)
    assert check_catalogue(schemas) == [
        "declaration.lodged v2 cannot read v1: DeclarationLodged.customsProcedureNote:"
        " new reader field without a default"
    ]


# --- The lock --------------------------------------------------------------------------------


@pytest.fixture
def copied(tmp_path: Path) -> SchemaCatalogue:
    directory = tmp_path / "schemas"
    shutil.copytree(SCHEMAS, directory)
    return SchemaCatalogue(directory)


def test_an_edited_version_is_reported(copied: SchemaCatalogue) -> None:
    path = copied.directory / "declaration.released" / "v1.avsc"
    schema = json.loads(path.read_text())
    schema["fields"][3]["type"]["scale"] = 3  # totalDuty: the wire fingerprint stays the same
    path.write_text(json.dumps(schema))
    edited = SchemaCatalogue(copied.directory)
    assert edited.latest("declaration.released").fingerprint == (
        copied.latest("declaration.released").fingerprint
    )
    assert lock_problems(edited, copied.directory / LOCK_NAME) == [
        "schemas/declaration.released/v1.avsc was edited after publication: publish a v2 instead"
    ]


def test_documentation_and_layout_may_change(copied: SchemaCatalogue) -> None:
    path = copied.directory / "declaration.released" / "v1.avsc"
    schema = json.loads(path.read_text())
    schema["doc"] = "Goods released for free circulation, with the amounts to pay (spec §9)"
    schema["fields"][3]["doc"] = "EUR"
    path.write_text(json.dumps(schema))  # one line, no indentation
    assert lock_problems(SchemaCatalogue(copied.directory), copied.directory / LOCK_NAME) == []


def test_missing_and_vanished_versions_are_reported(copied: SchemaCatalogue) -> None:
    lock = copied.directory / LOCK_NAME
    lines = lock.read_text().splitlines()
    lock.write_text("\n".join(line for line in lines if not line.startswith("clock.tick/")) + "\n")
    shutil.rmtree(copied.directory / "risk.assessed")
    assert lock_problems(SchemaCatalogue(copied.directory), lock) == [
        "schemas/clock.tick/v1.avsc is not in fingerprints.lock: once it is final, run"
        " `python -m streams.compat --lock`",
        "fingerprints.lock locks risk.assessed/v1 but schemas/risk.assessed/v1.avsc is gone:"
        " published versions stay, since messages written with them may still be read",
    ]


def test_locking_adds_new_versions_and_keeps_existing_lines(copied: SchemaCatalogue) -> None:
    lock = copied.directory / LOCK_NAME
    edited_line = "declaration.lodged/v1 " + "0" * 64  # must survive: locking never rewrites
    lines = [
        edited_line if line.startswith("declaration.lodged/v1 ") else line
        for line in lock.read_text().splitlines()
        if not line.startswith("clock.tick/")
    ]
    lock.write_text("\n".join(lines) + "\n")
    folder = copied.directory / "declaration.lodged"
    schema = json.loads((folder / "v1.avsc").read_text())
    schema["fields"].append({"name": "note", "type": ["null", "string"], "default": None})
    (folder / "v2.avsc").write_text(json.dumps(schema))
    schemas = SchemaCatalogue(copied.directory)

    added = lock_new_versions(schemas, lock)

    assert [line.split()[0] for line in added] == ["clock.tick/v1", "declaration.lodged/v2"]
    assert edited_line in lock.read_text().splitlines()
    assert lock_new_versions(schemas, lock) == []
    assert lock_problems(schemas, lock) == [
        "schemas/declaration.lodged/v1.avsc was edited after publication: publish a v3 instead"
    ]


def test_the_committed_lock_is_sorted_and_well_formed() -> None:
    text = (SCHEMAS / LOCK_NAME).read_text()
    lines = text.splitlines()
    assert text.endswith("\n")
    assert len(lines) == len(list(catalogue(SCHEMAS)))
    assert lines == sorted(lines)
