"""The clearance flow on the real broker, one test per decision path (spec §8-§10).

The four stages run as real worker processes in one namespace for the whole module; each test
lodges its own declarations and drives the COP, the officers, the trader and the clock itself.
Ticks reach every declaration of the namespace, so a test only asserts on its own declarations.
"""

from __future__ import annotations

import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streams.codec import SchemaCatalogue
from streams.kafka_io import producer
from streams.reference import load_reference
from streams.risk import assess_risk
from streams.topics import topic_name
from tests.integration.pipeline import (
    BASE,
    MS,
    TWO_HOURS,
    Pipeline,
    pre_lodged,
    running_pipeline,
    toys_from_china,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pipeline(
    bootstrap: str, schemas: SchemaCatalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with running_pipeline(bootstrap, schemas, tmp_path_factory.mktemp("clearance")) as running:
        yield running


def control_of(pipeline: Pipeline, mrn: str) -> str:
    return str(pipeline.expect("risk.assessed", mrn=mrn)["control"])


def test_no_control_then_release_with_the_assessed_amounts(pipeline: Pipeline) -> None:
    mrn = pipeline.lodge()
    assert control_of(pipeline, mrn) == "NONE"
    forward = pipeline.expect("cop.forwarded", mrn=mrn)
    duties = pipeline.expect("duties.assessed", mrn=mrn)
    assert forward["instruction"] == "RELEASE_ALLOWED"
    assert (forward["totalDuty"], forward["totalVat"]) == (duties["totalDuty"], duties["totalVat"])
    assert forward["declaration"]["presentationOffice"] == forward["presentationOffice"]

    pipeline.send("cop.risk-result", mrn=mrn, control="NONE", occurredAt=BASE + 10 * MS)
    released = pipeline.expect("declaration.released", mrn=mrn)

    assert (released["totalDuty"], released["totalVat"]) == (
        duties["totalDuty"],
        duties["totalVat"],
    )
    assert released["occurredAt"] == BASE + 10 * MS
    assert pipeline.expect("declaration.status", mrn=mrn, state="RELEASED")["history"] == [
        {"state": s, "occurredAt": at}
        for s, at in [
            ("ACCEPTED", BASE), ("RISK_ASSESSED", BASE), ("FORWARDED", BASE),
            ("RELEASED", BASE + 10 * MS),
        ]
    ]  # fmt: skip
    code, body = pipeline.status(mrn)
    assert code == 200 and body["state"] == "RELEASED" and body["mrn"] == mrn
    assert [h["state"] for h in body["history"]][-1] == "RELEASED"
    assert pipeline.codes(mrn, 2) == ["IE428", "IE429"]


def test_sco_documentary_control_satisfactory_then_release(pipeline: Pipeline) -> None:
    mrn = pipeline.lodge(change=toys_from_china)
    assert control_of(pipeline, mrn) == "DOCUMENTARY"
    assert pipeline.expect("cop.forwarded", mrn=mrn)["instruction"] == "CONTROL_REQUIRED"

    pipeline.send("cop.risk-result", mrn=mrn, control="NONE", occurredAt=BASE)
    ie460 = pipeline.expect("trader.notification", mrn=mrn, messageCode="IE460")
    assert ie460["control"] == "DOCUMENTARY"
    pipeline.expect("declaration.status", mrn=mrn, state="UNDER_CONTROL")
    pipeline.settle()
    assert pipeline.terminal(mrn) == []  # release waits for the control result

    pipeline.send("control.result", mrn=mrn, result="A1", officeRole="SCO", occurredAt=BASE)
    pipeline.expect("declaration.released", mrn=mrn)
    assert pipeline.codes(mrn, 3) == ["IE428", "IE460", "IE429"]


def test_cop_physical_control_not_satisfactory_then_no_release(pipeline: Pipeline) -> None:
    mrn = pipeline.lodge()
    pipeline.send("cop.risk-result", mrn=mrn, control="PHYSICAL", occurredAt=BASE)
    assert pipeline.expect("trader.notification", mrn=mrn, messageCode="IE460")["control"] == (
        "PHYSICAL"
    )
    pipeline.send("control.result", mrn=mrn, result="B1", officeRole="COP", occurredAt=BASE)

    refused = pipeline.expect("declaration.not-released", mrn=mrn)
    assert refused["reason"] == "CONTROL_NOT_SATISFACTORY"
    pipeline.expect("trader.notification", mrn=mrn, messageCode="IE451")
    # A terminal outcome stands: a later A1 or invalidation changes nothing.
    pipeline.send("control.result", mrn=mrn, result="A1", officeRole="SCO", occurredAt=BASE)
    pipeline.send("invalidation.requested", mrn=mrn, reason="too late", occurredAt=BASE)
    ie456 = pipeline.expect("trader.notification", mrn=mrn, messageCode="IE456")
    assert [e["code"] for e in ie456["errors"]] == ["R095"]
    pipeline.settle()
    assert pipeline.terminal(mrn) == ["declaration.not-released"]


def test_cop_silence_times_out_at_the_exact_deadline(pipeline: Pipeline) -> None:
    lodged = BASE + timedelta(days=1)
    mrn = pipeline.lodge(at=lodged)
    deadline = pipeline.expect("cop.forwarded", mrn=mrn)["occurredAt"] + TWO_HOURS

    pipeline.tick(deadline - MS)
    pipeline.settle()
    assert pipeline.terminal(mrn) == []

    pipeline.tick(deadline)
    released = pipeline.expect("declaration.released", mrn=mrn)
    assert released["occurredAt"] == deadline  # the tick that fired the timer caused it
    assert pipeline.codes(mrn, 2) == ["IE428", "IE429"]
    # The COP's answer arriving after the timeout is too late to matter.
    pipeline.send("cop.risk-result", mrn=mrn, control="PHYSICAL", occurredAt=deadline)
    pipeline.settle()
    assert pipeline.codes(mrn, 2) == ["IE428", "IE429"]


def test_pre_lodged_waits_for_presentation_then_release(pipeline: Pipeline) -> None:
    mrn = pipeline.lodge(change=pre_lodged)
    pipeline.send("cop.risk-result", mrn=mrn, control="NONE", occurredAt=BASE)
    pipeline.settle()
    assert pipeline.terminal(mrn) == []
    assert pipeline.status(mrn)[1]["state"] == "FORWARDED"

    pipeline.send("cop.goods-presented", mrn=mrn, location="DEHAM", occurredAt=BASE + MS)
    assert pipeline.expect("declaration.released", mrn=mrn)["occurredAt"] == BASE + MS


def test_pre_lodged_never_presented_lapses_after_thirty_days(pipeline: Pipeline) -> None:
    lodged = BASE + timedelta(days=2)
    mrn = pipeline.lodge(at=lodged, change=pre_lodged)
    lapse = lodged + timedelta(days=30)

    pipeline.tick(lapse - MS)  # also times the COP out: it is not presented, so it waits
    pipeline.settle()
    assert pipeline.terminal(mrn) == []

    pipeline.tick(lapse)
    lapsed = pipeline.expect("declaration.not-released", mrn=mrn)
    assert (lapsed["reason"], lapsed["occurredAt"]) == ("LAPSED", lapse)
    assert pipeline.codes(mrn, 2) == ["IE428", "IE451"]


def test_invalidation_before_a_terminal_outcome_and_after_it(pipeline: Pipeline) -> None:
    mrn = pipeline.lodge()
    pipeline.send("invalidation.requested", mrn=mrn, reason="duplicate entry", occurredAt=BASE)
    invalidated = pipeline.expect("declaration.invalidated", mrn=mrn)
    assert invalidated["reason"] == "duplicate entry"
    pipeline.expect("trader.notification", mrn=mrn, messageCode="IE410")

    pipeline.send("invalidation.requested", mrn=mrn, reason="again", occurredAt=BASE)
    pipeline.send("cop.risk-result", mrn=mrn, control="NONE", occurredAt=BASE)
    ie456 = pipeline.expect("trader.notification", mrn=mrn, messageCode="IE456")
    assert ie456["errors"][0]["code"] == "R095" and ie456["mrn"] == mrn
    pipeline.settle()
    assert pipeline.terminal(mrn) == ["declaration.invalidated"]
    assert pipeline.codes(mrn, 3) == ["IE428", "IE410", "IE456"]


def test_events_for_an_unknown_mrn_go_to_the_dead_letters(pipeline: Pipeline) -> None:
    unknown = "26FR0000000000000R"
    sent = pipeline.send("cop.risk-result", mrn=unknown, control="NONE", occurredAt=BASE)
    dead = pipeline.expect("dead-letter", reason="unknown-mrn", key=unknown.encode())
    assert dead["stage"] == "decision"
    assert dead["sourceTopic"] == topic_name(pipeline.settings.namespace, "cop.risk-result")
    assert pipeline.schemas.decode("cop.risk-result", dead["value"])["eventId"] == sent["eventId"]
    code, body = pipeline.status(unknown)
    assert code == 404 and body["mrn"] == unknown


def test_random_selection_matches_the_offline_assessment(pipeline: Pipeline) -> None:
    """The stage and `cci assess` run the same code: the stage's result equals the function's."""
    mrn = pipeline.lodge(change=toys_from_china)
    accepted = pipeline.expect("declaration.accepted", mrn=mrn)
    offline = assess_risk(accepted["declaration"], load_reference())
    assessed = pipeline.expect("risk.assessed", mrn=mrn)
    assert {k: assessed[k] for k in offline} == offline


@pytest.mark.parametrize("interruption", ["stop", "kill"])
def test_a_decision_stage_interrupted_mid_flow_loses_and_repeats_nothing(
    pipeline: Pipeline, interruption: str
) -> None:
    at = BASE + timedelta(days=40)
    mrns = pipeline.lodge_many(at=at, count=1000)
    answers = [{"mrn": m, "control": "NONE", "occurredAt": at} for m in mrns]
    # The answers arrive at a pace, for about ten seconds: the interruption lands while they
    # do, however fast the stage is (sent at once, a faster stage had released them all
    # before its graceful stop was through).
    sender = threading.Thread(target=_paced, args=(pipeline, "cop.risk-result", answers))
    sender.start()
    pipeline.expect("declaration.released", mrn=lambda m: m in set(mrns))
    decision = pipeline.workers["decision"]
    decision.kill() if interruption == "kill" else decision.stop()
    released_before = len(pipeline.events("declaration.released", mrn=lambda m: m in set(mrns)))
    decision.start()
    sender.join()

    for mrn in mrns:
        pipeline.expect("declaration.released", mrn=mrn, timeout=120)
    pipeline.settle()
    outcomes = Counter(m for lg in ("declaration.released", "cop.forwarded")
                       for m in (r["mrn"] for r in pipeline.events(lg)) if m in mrns)  # fmt: skip
    assert outcomes == {m: 2 for m in mrns}  # one forward and one release each
    assert released_before < len(mrns), "the stage had finished before the interruption"


def _paced(
    pipeline: Pipeline, logical: str, records: list[dict[str, Any]], per_tenth: int = 10
) -> None:
    """Publish `records` `per_tenth` at a time, one batch every tenth of a second, through
    one producer (a producer per batch would set the pace by its connection instead)."""
    client = producer(pipeline.settings)
    for start in range(0, len(records), per_tenth):
        pipeline.send_many(logical, records[start : start + per_tenth], client=client)
        time.sleep(0.1)


def scrape(port: int) -> tuple[str, list[tuple[str, dict[str, str], float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics") as answer:
        text = answer.read().decode()
    samples = [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]
    return text, samples


def test_every_worker_serves_its_metrics(pipeline: Pipeline) -> None:
    mrn = pipeline.lodge()
    pipeline.send("cop.risk-result", mrn=mrn, control="NONE", occurredAt=BASE)
    pipeline.expect("declaration.released", mrn=mrn)
    for stage, worker in pipeline.workers.items():
        text, samples = scrape(worker.port)
        processed = [
            value
            for name, labels, value in samples
            if name == "cci_stage_inputs_total"
            and labels == {**labels, "stage": stage, "outcome": "processed"}
        ]
        assert sum(processed) >= 1, stage
        assert any(name == "cci_consumer_lag_messages" for name, _, _ in samples), stage
        assert "process_resident_memory_bytes" in text
        assert mrn not in text
    _, samples = scrape(pipeline.workers["decision"].port)
    assert ("cci_declarations", {"state": "RELEASED"}) in [(n, lb) for n, lb, _ in samples]
    assert any(
        name == "cci_decision_latency_seconds_count" and labels == {"outcome": "released"}
        for name, labels, _ in samples
    )
