"""What lodging a declaration does (spec §4), as a pure function of the record and the state.

State per declaration key (declarant EORI + `/` + LRN) is a JSON-able dict:
`{"mrn": str | None, "eventIds": [recent event ids]}`. The MRN sequence is per partition of the
lodged topic, passed in and advanced by the caller when `sequence_used`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.events import Output, derived_event_id, notification, output
from streams.mrn import allocate
from streams.reference import ReferenceData
from streams.validation import validate

# The most errors one rejection carries, the first in the spec's order (code, then pointer):
# as many as the goods items a declaration may have (R060). Every error of a worst-case
# declaration would not fit in one Kafka message; a trader gets these rather than no answer.
MAX_REPORTED_ERRORS = 999

# How many event ids of one declaration key are remembered for redelivery detection. A trader
# re-lodging the same LRN more often than this could see a very old redelivery processed again.
EVENT_ID_MEMORY = 256


@dataclass(frozen=True)
class LodgingResult:
    outputs: list[Output] = field(default_factory=list)
    state: dict[str, Any] | None = None  # None: state unchanged (a redelivery)
    sequence_used: bool = False  # the declaration was accepted and took the next MRN


def lodge(
    record: Mapping[str, Any],
    state: Mapping[str, Any] | None,
    sequence: int,
    partition: int,
    reference: ReferenceData,
    country: str,
) -> LodgingResult:
    event_id = record["eventId"]
    mrn = state.get("mrn") if state else None
    seen: list[str] = list(state.get("eventIds", [])) if state else []
    if event_id in seen:
        return LodgingResult()
    new_state = {"mrn": mrn, "eventIds": [*seen, event_id][-EVENT_ID_MEMORY:]}
    occurred_at = record["occurredAt"]
    lrn, eori = record["lrn"], record["declarant"]["eori"]
    errors = validate(
        record, reference, country, already_accepted=mrn is not None, limit=MAX_REPORTED_ERRORS
    )
    if errors:
        error_dicts = [e.as_dict() for e in errors]
        rejected = output(
            "declaration.rejected",
            {
                "eventId": derived_event_id(event_id, "declaration.rejected"),
                "occurredAt": occurred_at,
                "lrn": lrn,
                "declarantEori": eori,
                "errors": error_dicts,
            },
        )
        ie456 = notification(event_id, occurred_at, "IE456", lrn, eori, errors=error_dicts)
        return LodgingResult([rejected, ie456], new_state)
    new_mrn = allocate(occurred_at.year, country, partition, sequence)
    new_state["mrn"] = new_mrn
    accepted = output(
        "declaration.accepted",
        {
            "eventId": derived_event_id(event_id, "declaration.accepted"),
            "occurredAt": occurred_at,
            "mrn": new_mrn,
            "lrn": lrn,
            "declarantEori": eori,
            "declaration": record,
        },
    )
    ie428 = notification(event_id, occurred_at, "IE428", lrn, eori, mrn=new_mrn)
    return LodgingResult([accepted, ie428], new_state, sequence_used=True)
