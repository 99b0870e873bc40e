"""The metrics a worker exposes: Prometheus names and units, bounded labels, lag per partition."""

from __future__ import annotations

import re

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from streams.broker_health import BrokerHealth
from streams.config import ROOT
from streams.metrics import PartitionLag, StageMetrics

RULES = ROOT / "deploy" / "prometheus" / "rules"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"


def scrape(metrics: StageMetrics) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(metrics.registry).decode()
    return {
        sample.name: [
            (s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == sample.name
        ]
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_end_in_total_and_carry_only_bounded_labels() -> None:
    metrics = StageMetrics("intake")
    metrics.handled("declarations.lodged", "processed", 0.002)
    metrics.handled("declarations.lodged", "duplicate")
    metrics.failed(ValueError("FR552100554 ACME"))
    metrics.dead_letter("malformed-body")

    samples = scrape(metrics)

    assert samples["cci_stage_inputs_total"] == [
        ({"stage": "intake", "topic": "declarations.lodged", "outcome": "processed"}, 1.0),
        ({"stage": "intake", "topic": "declarations.lodged", "outcome": "duplicate"}, 1.0),
    ]
    assert samples["cci_stage_errors_total"] == [({"stage": "intake", "kind": "ValueError"}, 1.0)]
    assert samples["cci_stage_dead_letters_total"] == [
        ({"stage": "intake", "reason": "malformed-body"}, 1.0)
    ]
    assert samples["cci_stage_processing_seconds_count"] == [({"stage": "intake"}, 1.0)]
    text = generate_latest(metrics.registry).decode()
    assert "FR552100554" not in text and "ACME" not in text  # an error's text is no label
    assert "process_cpu_seconds_total" in text


def test_decision_latency_runs_from_lodging_to_emission() -> None:
    metrics = StageMetrics("decision")
    metrics.decided("released", lodged_at_ms=1_000_000, now=1_000 + 2.0)
    metrics.decided("released", lodged_at_ms=1_000_000, now=999.0)  # a clock behind: 0, not < 0

    samples = dict(
        ((s[0].get("le"), s[0]["outcome"]), s[1])
        for s in scrape(metrics)["cci_decision_latency_seconds_bucket"]
    )
    assert samples[("1.0", "released")] == 1.0  # the 0 s one
    assert samples[("2.5", "released")] == 2.0
    assert scrape(metrics)["cci_decision_latency_seconds_sum"] == [({"outcome": "released"}, 2.0)]


def test_lag_is_reported_per_group_and_partition_and_a_failing_source_reports_none() -> None:
    metrics = StageMetrics("risk")
    metrics.watch_lag(
        "cci-risk",
        lambda: [
            PartitionLag("cci.declarations.accepted", 0, 12, 3.5),
            PartitionLag("cci.declarations.accepted", 1, 0, 0.0),
        ],
    )
    samples = scrape(metrics)
    labels = {"group": "cci-risk", "topic": "cci.declarations.accepted"}
    assert samples["cci_consumer_lag_messages"] == [
        ({**labels, "partition": "0"}, 12.0),
        ({**labels, "partition": "1"}, 0.0),
    ]
    assert samples["cci_consumer_lag_seconds"][0] == ({**labels, "partition": "0"}, 3.5)

    broken = StageMetrics("duties")

    def unavailable() -> list[PartitionLag]:
        raise RuntimeError("consumer between assignments")

    broken.watch_lag("cci-duties", unavailable)
    assert "cci_consumer_lag_messages" not in scrape(broken)


def test_every_bucket_an_alert_or_a_panel_selects_is_one_the_worker_exposes() -> None:
    # prometheus_client writes bucket bounds as Go floats (le="3600.0"): a rule selecting
    # le="3600" matches no series and its alert can never fire, while promtool, fed the rule's
    # own spelling, passes.
    metrics = StageMetrics("decision")
    metrics.handled("declarations.accepted", "processed", 0.002)
    metrics.decided("released", 0, now=1.0)
    metrics.broker(BrokerHealth(up=True, seconds=0.01, brokers=1))
    exposed = {
        (sample.name, sample.labels["le"])
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
        if "le" in sample.labels
    }
    selectors = re.compile(r'(\w+_bucket)\{[^}]*le="([^"]+)"')
    sources = [*RULES.glob("*.yml"), *DASHBOARDS.glob("*.json")]
    selected = {m.groups() for path in sources for m in selectors.finditer(path.read_text())}
    assert selected, "the rules select buckets by bound (CciDecisionLatencySloBurn)"
    assert selected <= exposed, selected - exposed
