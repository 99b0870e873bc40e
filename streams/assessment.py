"""Risk and duty assessment of one declaration in the JSON form (spec §2, §5, §6), offline.

What it decides: nothing of its own. `assess` runs `risk.assess_risk` and `duties.assess_duties`
and writes their results exactly as the stages' `risk.assessed` and `duties.assessed` events
would carry them in JSON (decimals as strings at the contract's scale, e.g. "12.00",
"7.500000"), minus the envelope (`eventId`, `occurredAt`, `mrn`) that only a lodged declaration
has. The conversion goes through the events' Avro schemas rather than hand-written formatting so
that the offline answer and the wire can never disagree.

How the command line uses it (`cci assess FILE`)::

    schemas = catalogue(settings.schemas_dir)
    reference = load_reference(settings.reference_dir)
    try:
        declaration = load_declaration_json(text, schemas, reference, settings.country)
    except NotADeclaration as exc:       # exit 2, like `cci validate`
        fail(f"{file}: {exc}")
    except InvalidDeclaration as exc:    # exit 1; exc.errors as `cci validate` prints them
        ...
    print(json.dumps(assess(declaration, reference, schemas)))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.codec import SchemaCatalogue, catalogue
from streams.duties import assess_duties
from streams.jsonform import JsonFormError, from_json, to_json
from streams.reference import ReferenceData
from streams.risk import assess_risk
from streams.validation import RuleError, validate

DEFAULT_SCHEMAS_DIR = Path(__file__).resolve().parent.parent / "schemas"
ENVELOPE = ("eventId", "occurredAt", "mrn")
# Any well-formed values: they only let the full record pass through the event's schema and are
# removed again.
_PLACEHOLDER = {
    "eventId": "00000000-0000-0000-0000-000000000000",
    "occurredAt": datetime(1970, 1, 1, tzinfo=UTC),
    "mrn": "",
}


class NotADeclaration(ValueError):
    """The text is not the JSON form of a DeclarationLodged (`cci validate` exit 2)."""


class InvalidDeclaration(ValueError):
    """A declaration that spec §4 rejects; it has no assessment (`cci validate` exit 1)."""

    def __init__(self, errors: list[RuleError]) -> None:
        super().__init__(
            "invalid declaration: " + "; ".join(f"{e.code} {e.pointer}" for e in errors)
        )
        self.errors = errors


def load_declaration_json(
    text: str, catalogue: SchemaCatalogue, reference: ReferenceData, country: str
) -> dict[str, Any]:
    """The Avro-native DeclarationLodged of `text`, checked as `cci validate` checks it.

    Raises `NotADeclaration` (not JSON, not an object, not the schema) or `InvalidDeclaration`
    (fails rules of spec §4 for node `country`; R090 is not checked offline).
    """
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotADeclaration(
            f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if not isinstance(document, dict):
        raise NotADeclaration("not a declaration: expected a JSON object")
    schema = catalogue.latest("declaration.lodged").schema
    # A declaration assessed before lodging has no message envelope yet; the assessment does not
    # read it, so fixed values keep this function deterministic.
    envelope = {"eventId": _PLACEHOLDER["eventId"], "occurredAt": "1970-01-01T00:00:00.000Z"}
    try:
        record: dict[str, Any] = from_json(schema, {**envelope, **document})
    except JsonFormError as exc:
        raise NotADeclaration(f"not a declaration: {exc}") from None
    errors = validate(record, reference, country)
    if errors:
        raise InvalidDeclaration(errors)
    return record


def event_json(
    schemas: SchemaCatalogue, logical: str, content: Mapping[str, Any]
) -> dict[str, Any]:
    """`content` (an event without envelope, Avro-native) in the event's JSON form."""
    schema = schemas.latest(logical).schema
    full: dict[str, Any] = to_json(schema, {**content, **_PLACEHOLDER})
    for key in ENVELOPE:
        del full[key]
    return full


def assess(
    declaration: Mapping[str, Any],
    reference: ReferenceData,
    schemas: SchemaCatalogue | None = None,
) -> dict[str, Any]:
    """`{"risk": ..., "duties": ...}` of a valid Avro-native declaration, in JSON form.

    `schemas` defaults to the project's `schemas/`. Raises `duties.AssessmentError` for a
    declaration that validation would have rejected.
    """
    schemas = schemas or catalogue(DEFAULT_SCHEMAS_DIR)
    return {
        "risk": event_json(schemas, "risk.assessed", assess_risk(declaration, reference)),
        "duties": event_json(schemas, "duties.assessed", assess_duties(declaration, reference)),
    }
