"""The fused topology (`Settings.fused_assessment`, docs/decisions.md, Topology) beside the four
stages, on the real broker: the same lodgings give the same acceptances and assessments, and
the same clearance, with only the intake and decision stages running."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from streams.admin import admin_client
from streams.codec import SchemaCatalogue
from streams.topics import STAGES, group_id
from tests.integration.pipeline import (
    BASE,
    FIXTURE,
    MS,
    Pipeline,
    running_pipeline,
    toys_from_china,
    unselected_lrn,
)

pytestmark = pytest.mark.integration

# Whatever order the four-stage topology's decision stage met its inputs in, these are the same.
SAME_RECORDS = ("declaration.accepted", "risk.assessed", "duties.assessed")


@pytest.fixture(scope="module")
def pipelines(
    bootstrap: str, schemas: SchemaCatalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, Pipeline]]:
    with ExitStack() as stack:
        split = stack.enter_context(
            running_pipeline(bootstrap, schemas, tmp_path_factory.mktemp("split"))
        )
        fused = stack.enter_context(
            running_pipeline(bootstrap, schemas, tmp_path_factory.mktemp("fused"), fused=True)
        )
        yield split, fused


def without_event_id(record: dict[str, Any]) -> dict[str, Any]:
    """A decision's eventId derives from the input that completed its step, which in the four
    stages is whichever of acceptance, risk and duties came last."""
    return {k: v for k, v in record.items() if k != "eventId"}


def test_the_same_lodgings_give_the_same_assessments_and_clearance(
    pipelines: tuple[Pipeline, Pipeline],
) -> None:
    eori = json.loads(FIXTURE.read_text())["declarant"]["eori"]
    plain = [unselected_lrn(eori) for _ in range(3)]
    controlled = [unselected_lrn(eori)]
    mrns: dict[str, list[str]] = {}
    for pipeline in pipelines:
        name = "fused" if pipeline.settings.fused_assessment else "split"
        mrns[name] = pipeline.lodge_many(lrns=plain) + pipeline.lodge_many(
            change=toys_from_china, lrns=controlled
        )
    # Fresh namespaces, the same lodgings in the same order: the same MRNs.
    assert mrns["fused"] == mrns["split"]
    split, fused = pipelines
    controls = {str(fused.expect("risk.assessed", mrn=mrn)["control"]) for mrn in mrns["fused"]}
    assert controls == {"NONE", "DOCUMENTARY"}, "the cases must include a control by profile"
    for mrn in mrns["fused"]:
        for logical in SAME_RECORDS:
            assert fused.expect(logical, mrn=mrn) == split.expect(logical, mrn=mrn), logical
        assert without_event_id(fused.expect("cop.forwarded", mrn=mrn)) == without_event_id(
            split.expect("cop.forwarded", mrn=mrn)
        )
        for pipeline in pipelines:
            pipeline.send("cop.risk-result", mrn=mrn, control="NONE", occurredAt=BASE + 10 * MS)
    for mrn in mrns["fused"][: len(plain)]:
        released = [without_event_id(p.expect("declaration.released", mrn=mrn)) for p in pipelines]
        assert released[0] == released[1]
        history = [p.expect("declaration.status", mrn=mrn, state="RELEASED") for p in pipelines]
        assert history[0]["history"] == history[1]["history"]
        code, body = fused.status(mrn)
        assert code == 200 and body["state"] == "RELEASED"
    # The documentary control waits for its result in both.
    for pipeline in pipelines:
        pipeline.expect("declaration.status", mrn=mrns["fused"][-1], state="UNDER_CONTROL")
        pipeline.settle()
        assert pipeline.terminal(mrns["fused"][-1]) == []


def test_only_the_intake_and_decision_stages_consume(pipelines: tuple[Pipeline, Pipeline]) -> None:
    _, fused = pipelines
    namespace = fused.settings.namespace
    admin = admin_client(fused.settings)  # held: a client collected mid-call fails the call
    listed = admin.list_consumer_groups().result(timeout=30)
    groups = {g.group_id for g in listed.valid if g.group_id.startswith(f"{namespace}-")}
    stages = {group_id(namespace, s) for s in STAGES}
    assert groups & stages == {group_id(namespace, "intake"), group_id(namespace, "decision")}
