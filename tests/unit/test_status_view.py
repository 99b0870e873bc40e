"""`GET /declarations/{mrn}` (spec §10): the body and status the decision stage answers with."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.stages.decision import status_view
from tests.unit.test_decision import (
    LRN,
    MRN,
    MS,
    H,
    Input,
    accepted,
    cop,
    duties,
    risk,
    run,
    through_forward,
)


def stored(inputs: list[Input]) -> dict[str, Any]:
    """The state as the stage keeps it: JSON, with the partition it added."""
    state = run(inputs).state
    assert state is not None
    return {**json.loads(json.dumps(state)), "partition": 3}


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(None, id="never-seen"),
        pytest.param(stored([risk("NONE"), duties()]), id="risk-and-duties-only"),
    ],
)
def test_an_mrn_without_an_accepted_declaration_is_404(state: dict[str, Any] | None) -> None:
    code, body = status_view(state, MRN)
    assert code == 404
    assert body == {"error": "unknown MRN", "mrn": MRN}


def test_an_accepted_declaration_has_its_state_and_history() -> None:
    state = stored([*through_forward("A", "DOCUMENTARY"), cop("NONE", H + 125 * MS)])
    code, body = status_view(state, MRN)
    assert code == 200
    assert body == {
        "mrn": MRN,
        "lrn": LRN,
        "state": "UNDER_CONTROL",
        "history": [
            {"state": "ACCEPTED", "occurredAt": "2026-04-01T08:00:00.000+00:00"},
            {"state": "RISK_ASSESSED", "occurredAt": "2026-04-01T08:00:00.000+00:00"},
            {"state": "FORWARDED", "occurredAt": "2026-04-01T08:00:00.000+00:00"},
            {"state": "UNDER_CONTROL", "occurredAt": "2026-04-01T09:00:00.125+00:00"},
        ],
    }
    assert json.loads(json.dumps(body)) == body  # what the web layer sends


def test_the_view_follows_the_state_right_after_acceptance() -> None:
    code, body = status_view(stored([accepted("D")]), MRN)
    assert code == 200
    assert (body["state"], len(body["history"])) == ("ACCEPTED", 1)
