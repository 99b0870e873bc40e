"""Determinism (spec §8): the same inputs in the same order, replayed into a fresh namespace,
give the same outputs apart from `eventId`."""

from __future__ import annotations

import json
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from streams.codec import SchemaCatalogue
from streams.decision import TERMINAL
from tests.integration.pipeline import (
    BASE,
    TWO_HOURS,
    Pipeline,
    pre_lodged,
    running_pipeline,
    toys_from_china,
    unselected_lrn,
)

pytestmark = pytest.mark.integration

OUTPUTS = (
    "declaration.accepted",
    "risk.assessed",
    "duties.assessed",
    "cop.forwarded",
    "declaration.released",
    "declaration.not-released",
    "declaration.invalidated",
    "trader.notification",
    "dead-letter",
)
EORI = "FR552100554"  # the fixture's declarant


def scenario(pipeline: Pipeline, lrns: list[str]) -> None:
    """Every decision path once, each step waiting for the one before, as a COP would."""
    released, documentary, physical, presented, lapsing, invalidated, silent = (
        pipeline.lodge(lrn=lrns[0]),
        pipeline.lodge(lrn=lrns[1], change=toys_from_china),
        pipeline.lodge(lrn=lrns[2]),
        pipeline.lodge(lrn=lrns[3], change=pre_lodged),
        pipeline.lodge(lrn=lrns[4], change=pre_lodged),
        pipeline.lodge(lrn=lrns[5]),
        pipeline.lodge(lrn=lrns[6]),
    )
    for mrn, control in ((released, "NONE"), (documentary, "NONE"), (physical, "PHYSICAL"),
                         (presented, "NONE")):  # fmt: skip
        pipeline.send("cop.risk-result", mrn=mrn, control=control, occurredAt=BASE)
    pipeline.expect("trader.notification", mrn=documentary, messageCode="IE460")
    pipeline.send("control.result", mrn=documentary, result="A1", officeRole="SCO",
                  occurredAt=BASE)  # fmt: skip
    pipeline.expect("trader.notification", mrn=physical, messageCode="IE460")
    pipeline.send("control.result", mrn=physical, result="B1", officeRole="COP", occurredAt=BASE)
    pipeline.send("cop.goods-presented", mrn=presented, location="DEHAM", occurredAt=BASE)
    pipeline.send("invalidation.requested", mrn=invalidated, reason="typo", occurredAt=BASE)
    pipeline.expect("declaration.invalidated", mrn=invalidated)
    pipeline.send("invalidation.requested", mrn=invalidated, reason="again", occurredAt=BASE)
    pipeline.send("cop.risk-result", mrn="26FR0000000000000R", control="NONE", occurredAt=BASE)
    for mrn in (released, documentary, physical, presented):
        pipeline.expect("declaration.status", mrn=mrn, state=lambda s: s in TERMINAL)
    pipeline.tick(BASE + TWO_HOURS)
    pipeline.expect("declaration.released", mrn=silent)
    pipeline.tick(BASE + timedelta(days=30))
    pipeline.expect("declaration.not-released", mrn=lapsing)
    pipeline.expect("dead-letter", reason="unknown-mrn")
    pipeline.settle()


def outcome(pipeline: Pipeline) -> dict[str, Any]:
    """Every output without its eventId, as a multiset per topic, and the latest status per MRN
    (the status topic is compacted: how many intermediate states one input shows depends on
    which of acceptance, risk and duties the stage happened to read first)."""
    result: dict[str, Any] = {
        logical: Counter(_canonical(r) for r in pipeline.events(logical)) for logical in OUTPUTS
    }
    latest = {r["mrn"]: _canonical(r) for r in pipeline.events("declaration.status")}
    result["declaration.status"] = latest
    return result


def _canonical(record: dict[str, Any]) -> str:
    if "stage" in record:
        # A dead letter: its envelope is about the message (broker time, offsets, namespace).
        kept = {k: record[k] for k in ("stage", "reason", "error", "key")}
    else:
        kept = {k: v for k, v in record.items() if k != "eventId"}
    return json.dumps(kept, sort_keys=True, default=str)


def test_the_same_inputs_into_a_fresh_namespace_give_the_same_outputs(
    bootstrap: str, schemas: SchemaCatalogue, tmp_path: Path
) -> None:
    lrns = [unselected_lrn(EORI) for _ in range(7)]
    runs = []
    for name in ("first", "replay"):
        with running_pipeline(bootstrap, schemas, tmp_path / name) as pipeline:
            scenario(pipeline, lrns)
            runs.append(outcome(pipeline))
    first, replay = runs
    assert sum(len(v) for v in first.values()) > 40
    for logical in first:
        assert first[logical] == replay[logical], logical
