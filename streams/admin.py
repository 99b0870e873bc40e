"""Topics as code: create (idempotently) or delete every topic of a namespace."""

from __future__ import annotations

import time
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streams.config import Settings
from streams.topics import all_topics, stage_changelogs, topic_config


class BrokerUnavailable(Exception):
    pass


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({**settings.kafka_client(), "socket.timeout.ms": 10000})


def wait_for_broker(settings: Settings, timeout: float = 30.0) -> AdminClient:
    admin = admin_client(settings)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admin.list_topics(timeout=5)
            return admin
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise BrokerUnavailable(
                    f"no Kafka broker answers at {settings.bootstrap} ({exc.args[0].str()}); "
                    "start the local one with `make broker` or set KAFKA_BOOTSTRAP"
                ) from None
            time.sleep(0.5)


def ensure_topics(
    settings: Settings,
    config: Mapping[str, str] | None = None,
    only: Mapping[str, bool] | None = None,
) -> list[str]:
    """Create the namespace's missing topics (or those of `only`, name → compacted), with topic
    `config` added to the defaults; return the names created."""
    admin = wait_for_broker(settings)
    existing = set(admin.list_topics(timeout=10).topics)
    wanted = all_topics(settings.namespace) if only is None else only
    new = [
        NewTopic(
            name,
            num_partitions=settings.partitions,
            replication_factor=settings.replication,
            config={**topic_config(compacted), **(config or {})},
        )
        for name, compacted in sorted(wanted.items())
        if name not in existing
    ]
    created: list[str] = []
    for name, future in admin.create_topics(new, operation_timeout=30).items() if new else []:
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    _wait_visible(admin, set(wanted))
    return created


def ensure_changelogs(settings: Settings, stage: str) -> list[str]:
    """A stage's table changelogs, created before its worker subscribes (see `all_topics`)."""
    return ensure_topics(
        settings, only={name: True for name in stage_changelogs(settings.namespace, stage)}
    )


def _wait_visible(admin: AdminClient, names: set[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=10).topics
        if all(n in metadata and not metadata[n].error for n in names):
            return
        time.sleep(0.2)
    raise BrokerUnavailable(f"topics not visible after {timeout:.0f}s: {sorted(names)}")


def delete_namespace(settings: Settings) -> list[str]:
    """Delete every topic of the namespace, Faust's internal ones included."""
    admin = wait_for_broker(settings)
    prefixes = (f"{settings.namespace}.", f"{settings.namespace}-")
    names = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefixes)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
    return sorted(names)
