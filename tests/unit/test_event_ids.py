"""Output event ids are UUID v5 of their cause and event name, exactly as `uuid.uuid5` makes
them: ids already written, and any other implementation of the contract, must match."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from streams.events import _NAMESPACE, derived_event_id


@given(st.text(), st.sampled_from(["declaration.status", "cop.forwarded", "é|€"]))
def test_an_event_id_is_the_uuid5_of_its_cause_and_event(cause: str, logical: str) -> None:
    made = derived_event_id(cause, logical)
    assert made == str(uuid.uuid5(_NAMESPACE, f"{cause}|{logical}"))
    assert uuid.UUID(made).version == 5


def test_a_known_id_stays_the_same() -> None:
    # The id the earlier implementation, str(uuid.uuid5(...)), gave: ids in existing topics.
    assert (
        derived_event_id("e1|25FR0000000000001", "declaration.status")
        == "b6645ce6-95bc-5e9a-ac77-8ac92876df96"
    )
