"""Prometheus metrics of one stage worker, served at `/metrics` on the worker's HTTP port.

Base units and Prometheus naming: seconds, `_total` for counters. Labels are bounded sets (stage,
input topic, outcome, reason, error class, state, partition); never a declaration, an MRN, an
LRN or a trader, so that personal data stays out and the series count stays fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from streams.broker_health import BrokerHealth

# Processing one input takes milliseconds; a decision takes from a second (no control) to hours
# of event time (a COP that stays silent) and days (presentation of pre-lodged goods).
PROCESSING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
BROKER_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0)
DECISION_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 7200, 86400, 2592000)


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    messages: int
    seconds: float


class LagCollector(Collector):
    """Consumer lag per input partition, read from the consumer when Prometheus scrapes."""

    def __init__(self, group: str, source: Callable[[], Iterable[PartitionLag]]) -> None:
        self.group = group
        self.source = source

    def collect(self) -> Iterator[GaugeMetricFamily]:
        messages = GaugeMetricFamily(
            "cci_consumer_lag_messages",
            "Inputs not yet processed, per consumer group and partition",
            labels=["group", "topic", "partition"],
        )
        seconds = GaugeMetricFamily(
            "cci_consumer_lag_seconds",
            "Age of the oldest input not yet processed, per consumer group and partition",
            labels=["group", "topic", "partition"],
        )
        try:
            lags = list(self.source())
        except Exception:  # a consumer between assignments: no lag to report this scrape
            lags = []
        for lag in lags:
            labels = [self.group, lag.topic, str(lag.partition)]
            messages.add_metric(labels, lag.messages)
            seconds.add_metric(labels, lag.seconds)
        yield messages
        yield seconds


class StageMetrics:
    def __init__(self, stage: str, registry: CollectorRegistry | None = None) -> None:
        self.stage = stage
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.inputs = Counter(
            "cci_stage_inputs",
            "Inputs a stage handled, by input topic and outcome",
            ["stage", "topic", "outcome"],
            registry=r,
        )
        self.errors = Counter(
            "cci_stage_errors", "Inputs that failed, by error class", ["stage", "kind"], registry=r
        )
        self.dead_letters = Counter(
            "cci_stage_dead_letters",
            "Messages sent to the dead-letter topic, by reason",
            ["stage", "reason"],
            registry=r,
        )
        self.processing = Histogram(
            "cci_stage_processing_seconds",
            "Time to process one input, its outputs sent",
            ["stage"],
            buckets=PROCESSING_BUCKETS,
            registry=r,
        )
        self.decision_latency = Histogram(
            "cci_decision_latency_seconds",
            "From lodging (event time) to the terminal outcome (time of emission), by outcome",
            ["outcome"],
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.declarations = Gauge(
            "cci_declarations",
            "Declarations by state, on this worker's partitions",
            ["state"],
            registry=r,
        )
        self.timers = Gauge(
            "cci_timers_pending", "Timer deadlines this worker is waiting for", registry=r
        )
        self.outcomes = Counter(
            "cci_intake_outcomes",
            "Lodged declarations accepted or rejected",
            ["outcome"],
            registry=r,
        )
        self.rejections = Counter(
            "cci_rejections",
            "Rule failures of rejected declarations, by rule code (one rejection may count many)",
            ["rule"],
            registry=r,
        )
        self.controls = Counter(
            "cci_controls", "SCO risk assessments by control level", ["control"], registry=r
        )
        self.rebalances = Counter(
            "cci_rebalances", "Partition assignments this worker received", ["stage"], registry=r
        )
        self.broker_up = Gauge(
            "cci_broker_up",
            "1 when the last metadata request to the Kafka cluster was answered, else 0",
            registry=r,
        )
        self.broker_request = Histogram(
            "cci_broker_request_seconds",
            "Round trip of the answered metadata requests to the Kafka cluster",
            buckets=BROKER_BUCKETS,
            registry=r,
        )
        self.brokers = Gauge(
            "cci_brokers", "Brokers listed in the cluster's last metadata answer", registry=r
        )
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self._handled: dict[tuple[str, str], Any] = {}
        self._processing: Any = None

    def handled(self, topic: str, outcome: str, seconds: float | None = None) -> None:
        # Once per input: the labelled series are looked up once each, not per call.
        counter = self._handled.get((topic, outcome))
        if counter is None:
            counter = self._handled[topic, outcome] = self.inputs.labels(self.stage, topic, outcome)
        counter.inc()
        if seconds is not None:
            if self._processing is None:
                self._processing = self.processing.labels(self.stage)
            self._processing.observe(seconds)

    def failed(self, error: BaseException) -> None:
        self.errors.labels(self.stage, type(error).__name__).inc()

    def dead_letter(self, reason: str) -> None:
        self.dead_letters.labels(self.stage, reason).inc()

    def decided(self, outcome: str, lodged_at_ms: int, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.decision_latency.labels(outcome).observe(max(0.0, now - lodged_at_ms / 1000))

    def broker(self, health: BrokerHealth) -> None:
        self.broker_up.set(1 if health.up else 0)
        self.brokers.set(health.brokers)
        if health.up:  # a refused or timed-out request measures the timeout, not the broker
            self.broker_request.observe(health.seconds)

    def watch_lag(self, group: str, source: Callable[[], Iterable[PartitionLag]]) -> None:
        self.registry.register(LagCollector(group, source))
