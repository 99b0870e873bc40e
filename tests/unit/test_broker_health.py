"""The broker probe: an answered metadata request is up with its round trip, a refused one is
down, and the metrics keep the refused request's timeout out of the latency histogram."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from streams.broker_health import BrokerHealth, BrokerProbe
from streams.metrics import StageMetrics
from tests.unit.test_metrics import scrape


class Metadata:
    def __init__(self, brokers: int) -> None:
        self.brokers = {i: object() for i in range(brokers)}


class Admin:
    def __init__(self, answers: list[Metadata | KafkaException]) -> None:
        self.answers = answers
        self.asked: list[tuple[str | None, float]] = []

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any:
        self.asked.append((topic, timeout))
        answer = self.answers.pop(0)
        if isinstance(answer, KafkaException):
            raise answer
        return answer


def ticking(*instants: float) -> Any:
    times = list(instants)
    return lambda: times.pop(0)


def test_an_answer_is_up_with_its_round_trip_and_the_brokers_listed() -> None:
    admin = Admin([Metadata(3)])
    probe = BrokerProbe({}, "cci.declarations.lodged", 1.5, admin, ticking(10.0, 10.004))

    health = probe.check()

    assert (health.up, health.brokers) == (True, 3)
    assert abs(health.seconds - 0.004) < 1e-9
    assert admin.asked == [("cci.declarations.lodged", 1.5)]


def test_a_refused_request_is_down() -> None:
    refused = KafkaException(KafkaError(KafkaError._TRANSPORT))
    probe = BrokerProbe({}, "t", 2.0, Admin([refused]), ticking(0.0, 2.0))

    health = probe.check()

    assert (health.up, health.brokers) == (False, 0)


def test_a_broker_that_comes_back_is_up_again() -> None:
    refused = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    probe = BrokerProbe({}, "t", 2.0, Admin([refused, Metadata(1)]), ticking(0, 2, 5, 5.01))

    assert [probe.check().up, probe.check().up] == [False, True]


def test_metrics_record_the_round_trip_of_answered_requests_only() -> None:
    metrics = StageMetrics("risk")
    metrics.broker(BrokerHealth(up=True, seconds=0.003, brokers=1))
    metrics.broker(BrokerHealth(up=False, seconds=2.0, brokers=0))

    samples = scrape(metrics)

    assert samples["cci_broker_up"] == [({}, 0.0)]
    assert samples["cci_brokers"] == [({}, 0.0)]
    assert samples["cci_broker_request_seconds_count"] == [({}, 1.0)]
    assert samples["cci_broker_request_seconds_sum"] == [({}, 0.003)]
