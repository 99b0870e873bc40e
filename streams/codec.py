"""Avro single-object encoding of every event, resolved through a catalogue of committed schemas.

Wire form: `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the writer schema's parsing canonical
form (little-endian, as the Avro specification writes it), then the Avro binary body. Every
message therefore names its own schema without a registry service, and a reader resolves any
earlier committed version of a schema to the latest one by Avro's schema-resolution rules.

Layout of the catalogue: `schemas/<logical name>/v<N>.avsc`, one file per published version,
never edited once committed (tests/unit/test_schemas.py guards that through `fingerprints.lock`).
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form

MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8
_VERSION_FILE = re.compile(r"^v([1-9][0-9]*)\.avsc$")
# Raises DecodeError when a decimal of the value at the JSON pointer does not fit its type.
_Check = Callable[[Any, str], None]
# The textual form of a UUID (RFC 9562), the only form of `eventId` (spec §2).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class DecodeError(Exception):
    """Bytes that cannot be read as the expected event. `reason` is stable, for dead letters."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class SchemaVersion:
    logical: str
    version: int
    path: Path
    schema: Any  # fastavro's parsed schema
    fingerprint: bytes
    # Raises DecodeError for a decoded value whose decimals do not fit their type.
    check_decimals: _Check | None = field(default=None, compare=False, repr=False)
    # The same schema as fastavro's writer and reader want it: marked as parsed, so that they
    # do not parse it again on every message (which cost about half of each encode). `schema`
    # stays the plain form, which callers compare and walk.
    codec_schema: Any = field(default=None, compare=False, repr=False)

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint


@dataclass(frozen=True)
class Embedded:
    """A decoded message to be embedded in an output: `value`, decoded from `data` (the whole
    single-object encoding), goes into the output's field `field` unchanged.

    Avro writes a record as its fields one after the other, so an output whose last field is
    the input record can copy the input's body instead of encoding it again: the intake's
    acceptance carries the whole lodged declaration, and encoding it was the intake's largest
    cost after Faust's own (docs/capacity.md)."""

    field: str
    data: bytes
    value: Any


@dataclass(frozen=True)
class _Splice:
    """How to write a record whose last field is copied: the schema of the fields before it,
    and the fingerprint the copied message's writer schema must have."""

    prefix: Any
    fingerprint: bytes


def _splice(writer: SchemaVersion, field_name: str) -> _Splice | None:
    """The splice of `writer` at its last field `field_name`; None when that field is not the
    last or not a record, or its type cannot stand alone (a name defined elsewhere)."""
    fields = writer.schema.get("fields") if isinstance(writer.schema, dict) else None
    if not fields or fields[-1]["name"] != field_name:
        return None
    last = fields[-1]["type"]
    if not isinstance(last, dict) or last.get("type") != "record":
        return None
    try:
        fingerprint_ = schema_fingerprint(last)
        # Avro defines a name before any use of it, so the fields before the last one never
        # need a name defined in it: they parse alone.
        prefix = parse_schema(
            {"type": "record", "name": "cci.codec.SplicePrefix", "fields": fields[:-1]}
        )
    except Exception:  # fastavro raises several types for a schema it cannot take alone
        return None
    return _Splice(prefix, fingerprint_)


def schema_fingerprint(parsed: Any) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))


def load_version(path: Path, logical: str) -> SchemaVersion:
    match = _VERSION_FILE.match(path.name)
    if not match:
        raise ValueError(f"{path}: schema files are named v<N>.avsc")
    declared = json.loads(path.read_text())
    parsed = parse_schema(declared, _write_hint=False)
    return SchemaVersion(
        logical,
        int(match.group(1)),
        path,
        parsed,
        schema_fingerprint(parsed),
        _check_of(parsed, _names(parsed, {})),
        parse_schema(declared),
    )


class SchemaCatalogue:
    """Every committed schema version, by logical event name and by fingerprint."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._versions: dict[str, list[SchemaVersion]] = {}
        self._by_fingerprint: dict[bytes, SchemaVersion] = {}
        self._splices: dict[tuple[bytes, str], _Splice | None] = {}
        for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
            versions = sorted(
                (load_version(f, folder.name) for f in folder.glob("v*.avsc")),
                key=lambda v: v.version,
            )
            if not versions:
                continue
            if [v.version for v in versions] != list(range(1, len(versions) + 1)):
                raise ValueError(f"{folder}: versions must be v1..vN without gaps")
            self._versions[folder.name] = versions
            for version in versions:
                other = self._by_fingerprint.get(version.fingerprint)
                if other is not None:
                    raise ValueError(f"{version.path} has the same canonical form as {other.path}")
                self._by_fingerprint[version.fingerprint] = version
        if not self._versions:
            raise ValueError(f"{directory}: no schemas found")

    def logical_names(self) -> list[str]:
        return sorted(self._versions)

    def versions(self, logical: str) -> list[SchemaVersion]:
        try:
            return self._versions[logical]
        except KeyError:
            raise KeyError(f"no schema for event {logical!r}") from None

    def latest(self, logical: str) -> SchemaVersion:
        return self.versions(logical)[-1]

    def by_fingerprint(self, fp: bytes) -> SchemaVersion | None:
        return self._by_fingerprint.get(fp)

    def __iter__(self) -> Iterator[SchemaVersion]:
        for logical in self.logical_names():
            yield from self._versions[logical]

    def encode(
        self, logical: str, record: Mapping[str, Any], embedded: Embedded | None = None
    ) -> bytes:
        """`record` as event `logical`, written with its latest schema. With `embedded`, a
        record holding the embedded value in its last field gets that field's bytes copied
        from the embedded message instead of written again, when the message's writer schema
        is the field's type; any other record is written as without it."""
        writer = self.latest(logical)
        buffer = io.BytesIO()
        buffer.write(writer.header)
        splice = None if embedded is None else self._splice_for(writer, record, embedded)
        if splice is None:
            schemaless_writer(buffer, writer.codec_schema, record)
        else:
            assert embedded is not None
            schemaless_writer(buffer, splice.prefix, record)
            buffer.write(memoryview(embedded.data)[HEADER_SIZE:])
        return buffer.getvalue()

    def last_field(self, data: bytes, field_name: str, value: Any) -> Embedded | None:
        """The last field of message `data`, a record decoded as `value`, with its own
        single-object encoding cut from `data`: for an output that carries it on (the
        acceptance's declaration, forwarded to the COP). None when `field_name` is not the
        writer schema's last field or not a record."""
        splice = self._splice_of(self.writer_of(data), field_name)
        if splice is None:
            return None
        stream = io.BytesIO(data)
        stream.seek(HEADER_SIZE)
        # The fields before it, read only to learn where it starts.
        schemaless_reader(stream, splice.prefix, None)
        body = memoryview(data)[stream.tell() :]
        return Embedded(field_name, b"".join((MAGIC, splice.fingerprint, body)), value)

    def _splice_of(self, writer: SchemaVersion, field_name: str) -> _Splice | None:
        key = (writer.fingerprint, field_name)
        if key not in self._splices:
            self._splices[key] = _splice(writer, field_name)
        return self._splices[key]

    def _splice_for(
        self, writer: SchemaVersion, record: Mapping[str, Any], embedded: Embedded
    ) -> _Splice | None:
        if record.get(embedded.field) is not embedded.value:
            return None
        splice = self._splice_of(writer, embedded.field)
        data = embedded.data
        if splice is None or data[:2] != MAGIC or data[2:HEADER_SIZE] != splice.fingerprint:
            return None
        return splice

    def writer_of(self, data: bytes) -> SchemaVersion:
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError(
                "not-single-object-encoding",
                f"{len(data)} bytes without the Avro single-object header C3 01",
            )
        writer = self._by_fingerprint.get(data[2:HEADER_SIZE])
        if writer is None:
            raise DecodeError(
                "unknown-schema", f"fingerprint {data[2:HEADER_SIZE].hex()} is in no catalogue"
            )
        return writer

    def decode(self, logical: str, data: bytes) -> dict[str, Any]:
        """Decode `data` as event `logical`, resolving an earlier writer version to the latest."""
        writer = self.writer_of(data)
        if writer.logical != logical:
            raise DecodeError(
                "wrong-schema", f"message is a {writer.logical} v{writer.version}, not a {logical}"
            )
        return _read_body(data, writer, self.latest(logical))

    def decode_any(self, data: bytes) -> tuple[str, dict[str, Any]]:
        writer = self.writer_of(data)
        return writer.logical, _read_body(data, writer, self.latest(writer.logical))


def check_event_id(record: Mapping[str, Any]) -> None:
    """Refuse an `eventId` that is not a UUID (spec §2): stages remember recent ids per
    declaration to ignore redeliveries, so an id of any length would let one sender grow that
    state past what a changelog record can carry."""
    event_id = record.get("eventId")
    if not isinstance(event_id, str) or not _UUID.fullmatch(event_id):
        shown = repr(event_id[:40]) if isinstance(event_id, str) else type(event_id).__name__
        length = f" ({len(event_id)} characters)" if isinstance(event_id, str) else ""
        raise DecodeError("invalid-event-id", f"eventId {shown}{length} is not a UUID")


def _read_body(data: bytes, writer: SchemaVersion, reader: SchemaVersion) -> dict[str, Any]:
    stream = io.BytesIO(data)
    stream.seek(HEADER_SIZE)
    try:
        # Resolution costs a second walk of the schema: skip it when the versions agree.
        record = schemaless_reader(
            stream, writer.codec_schema, None if reader is writer else reader.codec_schema
        )
    except Exception as exc:  # fastavro raises many types on corrupt input
        raise DecodeError(
            "malformed-body", f"{writer.logical} v{writer.version}: {type(exc).__name__}: {exc}"
        ) from None
    if stream.tell() != len(data):
        raise DecodeError(
            "malformed-body",
            f"{len(data) - stream.tell()} bytes left after the {writer.logical} record",
        )
    if not isinstance(record, dict):
        raise DecodeError("malformed-body", "the body is not an Avro record")
    if reader.check_decimals is not None:
        reader.check_decimals(record, "")
    return record


def _names(schema: Any, found: dict[str, Any]) -> dict[str, Any]:
    if isinstance(schema, list):
        for branch in schema:
            _names(branch, found)
    elif isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed") and "name" in schema:
            found.setdefault(schema["name"], schema)
        for field in schema.get("fields", []) if schema.get("type") == "record" else []:
            _names(field["type"], found)
        for key in ("items", "values"):
            if key in schema:
                _names(schema[key], found)
    return found


def _check_of(
    schema: Any, names: dict[str, Any], seen: frozenset[str] = frozenset()
) -> _Check | None:
    """The precision check of every decimal of `schema`, None when it has no decimal.

    fastavro reads a decimal of any length and rounds it to the schema's precision without a
    word: 10^40 in a decimal(18,2) comes back as 1.00000000000000000E+38, an amount no field
    of the contract can hold and no quantize at cents can handle. Such bytes are not the event
    the schema describes, so they do not decode (spec §3: to the dead letters)."""
    if isinstance(schema, str):
        if schema not in names or schema in seen:
            # A primitive, or a recursive reference, not followed: no contract is recursive.
            return None
        return _check_of(names[schema], names, seen | {schema})
    if isinstance(schema, list):
        branches = [c for c in (_check_of(b, names, seen) for b in schema) if c is not None]
        if not branches:
            return None

        def union(value: Any, pointer: str) -> None:
            if value is not None:
                for branch in branches:  # a branch ignores values of another kind
                    branch(value, pointer)

        return union
    kind = schema.get("type")
    if schema.get("logicalType") == "decimal" and kind in ("bytes", "fixed"):
        precision, scale = int(schema["precision"]), int(schema.get("scale", 0))

        def decimal(value: Any, pointer: str) -> None:
            # Digits once written at the schema's scale: the rounded form fastavro gives an
            # overlong value always has more.
            if isinstance(value, Decimal) and value and value.adjusted() + 1 + scale > precision:
                raise DecodeError(
                    "malformed-body",
                    f"{pointer or '/'}: more digits than decimal({precision},{scale}) holds",
                )

        return decimal
    if kind == "record":
        name = schema.get("name")
        inner = seen | {name} if isinstance(name, str) else seen
        fields = [
            (f["name"], c)
            for f in schema["fields"]
            if (c := _check_of(f["type"], names, inner)) is not None
        ]
        if not fields:
            return None

        def record(value: Any, pointer: str) -> None:
            if isinstance(value, dict):
                for field, check in fields:
                    check(value.get(field), f"{pointer}/{field}")

        return record
    if kind in ("array", "map"):
        element = _check_of(schema["items" if kind == "array" else "values"], names, seen)
        if element is None:
            return None

        def elements(value: Any, pointer: str) -> None:
            pairs = (
                enumerate(value)
                if isinstance(value, list)
                else (value.items() if isinstance(value, dict) else ())
            )
            for index, item in pairs:
                token = str(index).replace("~", "~0").replace("/", "~1")
                element(item, f"{pointer}/{token}")

        return elements
    return None


@lru_cache(maxsize=4)
def catalogue(directory: Path) -> SchemaCatalogue:
    return SchemaCatalogue(directory)
