"""`lodge` as a table of (state, declaration) -> (new state, outputs), without Faust or Kafka."""

from __future__ import annotations

from typing import Any

import pytest

from streams.codec import catalogue
from streams.config import Settings
from streams.generator import generate
from streams.jsonform import from_json
from streams.lodging import EVENT_ID_MEMORY, lodge
from streams.mrn import allocate
from streams.reference import ReferenceData, load_reference


@pytest.fixture(scope="module")
def reference() -> ReferenceData:
    return load_reference()


def declaration(seed: int, invalid_share: float = 0.0) -> dict[str, Any]:
    schema = catalogue(Settings().schemas_dir).latest("declaration.lodged").schema
    [json_form] = generate(1, invalid_share, seed, load_reference())
    record: dict[str, Any] = from_json(schema, json_form)
    return record


def test_acceptance_takes_the_sequence_number_and_remembers_the_mrn(
    reference: ReferenceData,
) -> None:
    record = declaration(1)
    result = lodge(record, None, sequence=41, partition=2, reference=reference, country="FR")
    mrn = allocate(record["occurredAt"].year, "FR", 2, 41)
    assert result.sequence_used
    assert result.state == {"mrn": mrn, "eventIds": [record["eventId"]]}
    assert [o.logical for o in result.outputs] == ["declaration.accepted", "trader.notification"]
    assert result.outputs[0].record["declaration"] is record
    assert all(o.record["occurredAt"] == record["occurredAt"] for o in result.outputs)


def test_rejection_keeps_no_mrn_and_uses_no_sequence_number(reference: ReferenceData) -> None:
    record = declaration(2, invalid_share=1.0)
    result = lodge(record, None, sequence=0, partition=0, reference=reference, country="FR")
    assert not result.sequence_used
    assert result.state == {"mrn": None, "eventIds": [record["eventId"]]}
    assert [o.logical for o in result.outputs] == ["declaration.rejected", "trader.notification"]


def test_a_redelivery_changes_nothing_and_a_relodging_meets_r090(reference: ReferenceData) -> None:
    record = declaration(3)
    first = lodge(record, None, 0, 0, reference, "FR")
    assert lodge(record, first.state, 1, 0, reference, "FR").outputs == []
    again = lodge({**record, "eventId": "another"}, first.state, 1, 0, reference, "FR")
    assert [e["code"] for e in again.outputs[0].record["errors"]] == ["R090"]
    assert again.state is not None and again.state["mrn"] == first.state["mrn"]  # type: ignore[index]


def test_outputs_are_the_same_bytes_for_the_same_input(reference: ReferenceData) -> None:
    record = declaration(4)
    one = lodge(record, None, 7, 1, reference, "FR")
    two = lodge(record, None, 7, 1, reference, "FR")
    assert one.outputs == two.outputs


def test_the_event_id_memory_is_bounded(reference: ReferenceData) -> None:
    record = declaration(5, invalid_share=1.0)
    state: dict[str, Any] | None = None
    for i in range(EVENT_ID_MEMORY + 10):
        state = lodge({**record, "eventId": f"e{i}"}, state, 0, 0, reference, "FR").state
    assert state is not None and len(state["eventIds"]) == EVENT_ID_MEMORY
    assert state["eventIds"][-1] == f"e{EVENT_ID_MEMORY + 9}"
