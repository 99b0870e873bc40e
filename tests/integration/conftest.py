"""Integration tests run against the real Kafka broker: the one named by KAFKA_BOOTSTRAP, or the
local one that `deploy/local/kafka.sh start` provisions (and reuses when it already runs).

Each test gets its own namespace, so topics, consumer groups and table state never leak between
tests, and workers run as real `cci worker` processes, as in production.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka.cimpl import NewTopic

from streams.admin import admin_client, delete_namespace, ensure_topics
from streams.codec import DecodeError, SchemaCatalogue, catalogue
from streams.config import ROOT, Settings
from streams.kafka_io import read
from streams.ports import free_port
from streams.topics import dead_letter_topic, topic_name

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def bootstrap() -> str:
    configured = os.environ.get("KAFKA_BOOTSTRAP")
    if configured:
        return configured
    subprocess.run(["bash", str(ROOT / "deploy" / "local" / "kafka.sh"), "start"], check=True)
    return "127.0.0.1:9092"


@pytest.fixture
def settings(bootstrap: str, tmp_path: Path) -> Iterator[Settings]:
    namespace = f"it-{uuid.uuid4().hex[:10]}"
    current = Settings(
        bootstrap=bootstrap, namespace=namespace, partitions=3, state_dir=tmp_path / "state"
    )
    ensure_topics(current)
    yield current
    delete_namespace(current)


def one_partition_topic(settings: Settings, suffix: str) -> str:
    """A topic of the test's namespace with a single partition, created now."""
    name = f"{settings.namespace}.{suffix}"
    admin = admin_client(settings)  # kept: the futures need the client alive
    for future in admin.create_topics([NewTopic(name, 1, 1)]).values():
        future.result()
    return name


@contextlib.asynccontextmanager
async def read_committed_consumer(settings: Settings) -> AsyncIterator[AIOKafkaConsumer]:
    """An aiokafka consumer as a transactional Faust worker makes one: read committed, offsets
    never committed by itself. Started, assigned nothing yet."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap,
        isolation_level="read_committed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


@pytest.fixture(scope="session")
def schemas() -> SchemaCatalogue:
    return catalogue(Settings().schemas_dir)


class WorkerProcess:
    """A `cci worker --stage S` process with its log, started and stopped like an operator would."""

    def __init__(
        self,
        settings: Settings,
        stage: str,
        log_dir: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = settings
        self.stage = stage
        self.extra_env = dict(env or {})  # e.g. CCI_REFERENCE_DIR, over the settings
        self.log_path = log_dir / f"{stage}-{time.monotonic_ns()}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = free_port()

    def start(self, wait_ready: float = 90.0) -> WorkerProcess:
        return self.launch().wait_ready(wait_ready)

    def launch(self) -> WorkerProcess:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.settings.bootstrap,
            "CCI_NAMESPACE": self.settings.namespace,
            "CCI_PARTITIONS": str(self.settings.partitions),
            "CCI_STATE_DIR": str(self.settings.state_dir),
            "CCI_WEB_PORT": str(self.port),
            "CCI_FUSED_ASSESSMENT": str(self.settings.fused_assessment).lower(),
            **self.extra_env,
        }
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--stage", self.stage],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    def wait_ready(self, wait_ready: float = 90.0) -> WorkerProcess:
        assert self.process is not None
        deadline = time.monotonic() + wait_ready
        while b"Ready" not in self.log_path.read_bytes():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited early:\n{self.log()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not ready after {wait_ready}s:\n{self.log()}")
            time.sleep(0.2)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


@pytest.fixture
def workers(settings: Settings, tmp_path: Path) -> Iterator[Any]:
    started: list[WorkerProcess] = []

    def start(stage: str = "intake", env: Mapping[str, str] | None = None) -> WorkerProcess:
        worker = WorkerProcess(settings, stage, tmp_path, env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def collect(
    settings: Settings,
    schemas: SchemaCatalogue,
    logicals: list[str],
    until: int,
    timeout: float = 90.0,
    events_only: bool = False,
) -> dict[str, list[dict[str, Any]]]:
    """Read (read_committed) the topics of `logicals` until `until` events in all, or timeout.

    `dead-letter` stands for the intake stage's dead-letter topic. `events_only` leaves out
    what does not decode, such as bytes a test of rights wrote to the same topics.
    """
    names = {
        (dead_letter_topic(settings.namespace, "intake") if lg == "dead-letter" else
         topic_name(settings.namespace, lg)): lg
        for lg in logicals
    }  # fmt: skip
    found: dict[str, list[dict[str, Any]]] = {lg: [] for lg in logicals}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = {lg: [] for lg in logicals}
        for message in read(settings, list(names), idle_timeout=2.0):
            try:
                _, record = schemas.decode_any(message.value or b"")
            except DecodeError:
                if events_only:
                    continue
                raise
            record["_kafka"] = message
            found[names[message.topic]].append(record)
        if sum(len(v) for v in found.values()) >= until:
            return found
        time.sleep(1.0)
    return found
