"""Whether a worker reaches the Kafka cluster, and how long the cluster takes to answer.

A stage whose broker is gone looks idle, not broken: its lag stops moving and its counters
stay flat. The probe asks the cluster for the metadata of one input topic at a fixed interval
of wall-clock time (monitoring, not processing, so event time does not apply) and keeps the
answer for Prometheus: reachable or not, the round trip, the brokers the cluster lists.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient


@dataclass(frozen=True)
class BrokerHealth:
    up: bool
    seconds: float
    brokers: int


class _Metadata(Protocol):
    brokers: dict[int, Any]


class _Admin(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _Metadata: ...


class BrokerProbe:
    """One metadata request per `check`; the admin client keeps its connections between them."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        timeout: float = 2.0,
        admin: _Admin | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.topic = topic
        self.timeout = timeout
        self.clock = clock
        self.admin: _Admin = admin if admin is not None else AdminClient(config)

    def check(self) -> BrokerHealth:
        began = self.clock()
        try:
            metadata = self.admin.list_topics(topic=self.topic, timeout=self.timeout)
        except KafkaException:
            return BrokerHealth(up=False, seconds=self.clock() - began, brokers=0)
        return BrokerHealth(up=True, seconds=self.clock() - began, brokers=len(metadata.brokers))
