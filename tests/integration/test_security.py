"""The pipeline on a secured broker: SASL/SCRAM-SHA-512 over TLS, ACLs from `streams.access`.

The module starts its own secure broker (`KAFKA_SECURITY=sasl_ssl deploy/local/kafka.sh`) on
free ports, in a temporary state dir with certificates and passwords made for this run, and
wipes it at the end: it runs beside the plain broker of the other tests and touches nothing
of it. What it shows: a client without valid credentials is refused; a stage cannot write a
topic it does not own; a real `cci worker` process does its work with its own principal's
credentials, given through the environment and a password file, and neither the password nor
a trader's name shows in its log, its metrics or its command line. In a second namespace of the
same broker, given the fused topology's principals (`principals(..., fused_assessment=True)`):
the decision stage may write the assessments and not read them, there is no risk or duty user,
and the intake and a fused decision stage clear declarations on their own credentials.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from streams.access import apply_acls, principals, stage_user, tools_user, upsert_users
from streams.access import user_passwords as make_passwords
from streams.admin import ensure_topics
from streams.codec import SchemaCatalogue
from streams.config import ROOT, Settings
from streams.generator import generate
from streams.jsonform import from_json
from streams.kafka_io import publish_records
from streams.ports import free_port
from streams.reference import load_reference
from streams.topics import ASSESSMENTS, dead_letter_topic, group_id, topic_name
from tests.integration.conftest import WorkerProcess, collect

pytestmark = pytest.mark.integration

KAFKA_SH = ROOT / "deploy" / "local" / "kafka.sh"


@dataclass(frozen=True)
class SecureCluster:
    root: Path
    bootstrap: str
    namespace: str
    state_dir: Path

    @property
    def cafile(self) -> Path:
        return self.root / "tls" / "ca.pem"

    def password_file(self, user: str) -> Path:
        if user == "admin":
            return self.root / "credentials" / "admin.password"
        return self.root / "users" / f"{user}.password"

    def password(self, user: str) -> str:
        return self.password_file(user).read_text().strip()

    def env(self, user: str) -> dict[str, str]:
        """What a process needs to connect as `user`: no password, only where to read it."""
        return {
            "KAFKA_BOOTSTRAP": self.bootstrap,
            "CCI_SECURITY_PROTOCOL": "SASL_SSL",
            "CCI_SASL_USERNAME": user,
            "CCI_SASL_PASSWORD_FILE": str(self.password_file(user)),
            "CCI_SSL_CAFILE": str(self.cafile),
        }

    def settings(self, user: str) -> Settings:
        return Settings(
            bootstrap=self.bootstrap,
            namespace=self.namespace,
            partitions=2,
            state_dir=self.state_dir,
            security_protocol="SASL_SSL",
            sasl_username=user,
            sasl_password_file=self.password_file(user),
            ssl_cafile=self.cafile,
        )


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureCluster]:
    root = tmp_path_factory.mktemp("kafka-secure")
    port = free_port()
    controller = free_port()
    while controller == port:
        controller = free_port()
    # KAFKA_BOOTSTRAP or KAFKA_DATA_DIR would point the script at the other broker's things.
    env = {k: v for k, v in os.environ.items() if k not in ("KAFKA_BOOTSTRAP", "KAFKA_DATA_DIR")}
    env.update(
        {
            "KAFKA_SECURITY": "sasl_ssl",
            "KAFKA_SECURE_DIR": str(root),
            "KAFKA_PORT": str(port),
            "KAFKA_CONTROLLER_PORT": str(controller),
            "CCI_PYTHON": sys.executable,
        }
    )
    subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, check=True)
    try:
        cluster = SecureCluster(
            root, f"127.0.0.1:{port}", f"sec-{uuid.uuid4().hex[:8]}", root / "state"
        )
        admin_settings = cluster.settings("admin")
        ensure_topics(admin_settings)
        admin = AdminClient(dict(admin_settings.kafka_client()))
        found = principals(cluster.namespace)
        upsert_users(admin, make_passwords(root / "users", [p.user for p in found]))
        apply_acls(admin, [acl for p in found for acl in p.acls])
        yield cluster
    finally:
        # `reset` also deletes the passwords and certificates made for this run.
        subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=False)


def refusal(config: dict[str, Any]) -> list[KafkaError]:
    """The errors a client meets asking `config`'s broker for metadata; fails if it answers."""
    errors: list[KafkaError] = []
    # The stubs type a configuration's values as scalars; error_cb is a callable.
    admin = AdminClient(cast(Any, {**config, "error_cb": errors.append, "log_level": 0}))
    with pytest.raises(KafkaException):
        admin.list_topics(timeout=3)
    admin.poll(0.5)  # error_cb runs only from poll
    return errors


def test_a_client_without_valid_credentials_is_refused(secure: SecureCluster) -> None:
    base = {"bootstrap.servers": secure.bootstrap}
    tls = {**base, "security.protocol": "SSL", "ssl.ca.location": str(secure.cafile)}
    scram = {
        **base,
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": stage_user(secure.namespace, "intake"),
        "ssl.ca.location": str(secure.cafile),
    }
    refusal(base)  # no TLS, no SASL
    refusal(tls)  # TLS, but no credentials
    wrong = refusal({**scram, "sasl.password": "not-the-password"})
    assert any(e.code() == KafkaError._AUTHENTICATION for e in wrong), wrong
    unknown = refusal({**scram, "sasl.username": "nobody", "sasl.password": "x"})
    assert any(e.code() == KafkaError._AUTHENTICATION for e in unknown), unknown
    # The right password, to a broker whose certificate the client cannot check: refused
    # before any credential leaves the client.
    untrusted = {k: v for k, v in scram.items() if k != "ssl.ca.location"}
    password = secure.password(stage_user(secure.namespace, "intake"))
    errors = refusal({**untrusted, "sasl.password": password})
    assert any(e.code() == KafkaError._SSL for e in errors), errors
    # The same client with the CA answers: the refusals above are not a broken broker.
    intake = secure.settings(stage_user(secure.namespace, "intake"))
    assert AdminClient(dict(intake.kafka_client())).list_topics(timeout=10).brokers


def test_a_stage_cannot_write_a_topic_it_does_not_own(secure: SecureCluster) -> None:
    intake = secure.settings(stage_user(secure.namespace, "intake"))
    client = Producer({**intake.kafka_client(), "enable.idempotence": False, "log_level": 0})
    outcomes: dict[str, int | None] = {}

    def delivered(error: KafkaError | None, message: Any) -> None:
        outcomes[message.topic()] = None if error is None else error.code()

    own = dead_letter_topic(secure.namespace, "intake")
    foreign = [
        topic_name(secure.namespace, logical)
        for logical in ("declaration.released", "risk.assessed", "declaration.lodged")
    ]
    for topic in [own, *foreign]:
        client.produce(topic, key=b"k", value=b"v", on_delivery=delivered)
    assert client.flush(30) == 0
    assert outcomes == {
        own: None,
        **{topic: KafkaError.TOPIC_AUTHORIZATION_FAILED for topic in foreign},
    }


def names_in(value: Any) -> set[str]:
    """Every `name` of a declaration: the people and companies it mentions."""
    if isinstance(value, dict):
        found = {v for k, v in value.items() if k == "name" and isinstance(v, str)}
        return found.union(*(names_in(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(names_in(v) for v in value))
    return set()


def test_a_worker_runs_on_its_own_credentials_and_shows_neither_secrets_nor_names(
    secure: SecureCluster, schemas: SchemaCatalogue, tmp_path: Path
) -> None:
    intake_user = stage_user(secure.namespace, "intake")
    password = secure.password(intake_user)
    schema = schemas.latest("declaration.lodged").schema
    lodged = [
        from_json(schema, d)
        for d in [
            *generate(2, 0.0, 31, load_reference()),
            *generate(1, 1.0, 32, load_reference()),  # rejected: its errors in the logs?
        ]
    ]
    names = set().union(*(names_in(d) for d in lodged))
    assert names, "the generated declarations name their traders"

    worker = WorkerProcess(
        Settings(
            bootstrap=secure.bootstrap,
            namespace=secure.namespace,
            partitions=2,
            state_dir=tmp_path / "state",
        ),
        "intake",
        tmp_path,
        env=secure.env(intake_user),
    )
    # The test's own environment must not hand the worker another identity or a password.
    assert not {k for k in os.environ if k.startswith(("CCI_SASL", "CCI_SECURITY"))}
    worker.start()
    try:
        tools = secure.settings(tools_user(secure.namespace))
        publish_records(tools, schemas, "declaration.lodged", lodged)
        out = collect(tools, schemas, ["declaration.accepted", "declaration.rejected"], until=3)
        assert len(out["declaration.accepted"]) == 2
        assert len(out["declaration.rejected"]) == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{worker.port}/metrics", timeout=10) as r:
            metrics = r.read().decode()
        assert 'cci_intake_outcomes_total{outcome="accepted"' in metrics
        assert worker.process is not None
        proc = Path("/proc") / str(worker.process.pid)
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        environ = (proc / "environ").read_bytes().decode(errors="replace")
    finally:
        worker.stop()
    log = worker.log_path.read_text(errors="replace")
    assert f"Authenticated as {intake_user}" in log  # aiokafka's line: it did use SCRAM
    for text in (log, metrics, cmdline, environ):
        assert password not in text
    for text in (log, metrics):
        assert not [n for n in names if n in text]


# --- the fused topology -------------------------------------------------------------------


@pytest.fixture(scope="module")
def secure_fused(secure: SecureCluster) -> SecureCluster:
    """A second namespace on the same broker, with the fused topology's users and ACLs. Its
    principals are other users than the first namespace's, so the two topologies' rights do not
    add up on one user."""
    cluster = replace(
        secure, namespace=f"secf-{uuid.uuid4().hex[:8]}", state_dir=secure.root / "state-fused"
    )
    admin_settings = cluster.settings("admin")
    ensure_topics(admin_settings)
    admin = AdminClient(dict(admin_settings.kafka_client()))
    found = principals(cluster.namespace, fused_assessment=True)
    upsert_users(admin, make_passwords(cluster.root / "users", [p.user for p in found]))
    apply_acls(admin, [acl for p in found for acl in p.acls])
    return cluster


def test_the_fused_decision_writes_the_assessments_and_cannot_read_them(
    secure_fused: SecureCluster,
) -> None:
    namespace = secure_fused.namespace
    decision = secure_fused.settings(stage_user(namespace, "decision"))
    assessments = [topic_name(namespace, logical) for logical in ASSESSMENTS]
    client = Producer({**decision.kafka_client(), "enable.idempotence": False, "log_level": 0})
    outcomes: dict[str, int | None] = {}

    def delivered(error: KafkaError | None, message: Any) -> None:
        outcomes[message.topic()] = None if error is None else error.code()

    for topic in assessments:
        client.produce(topic, key=b"k", value=b"v", on_delivery=delivered)
    assert client.flush(30) == 0
    assert outcomes == dict.fromkeys(assessments)

    consumer = Consumer(
        {
            **decision.kafka_client(),
            "group.id": group_id(namespace, "decision"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "log_level": 0,
        }
    )
    consumer.subscribe(assessments)
    codes: list[int] = []
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline and KafkaError.TOPIC_AUTHORIZATION_FAILED not in codes:
            message = consumer.poll(1.0)
            if message is None:
                continue
            error = message.error()
            assert error is not None, f"the fused decision read {message.topic()}"
            codes.append(error.code())
    finally:
        consumer.close()
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in codes, codes


def test_the_fused_topology_has_no_risk_or_duty_user(secure_fused: SecureCluster) -> None:
    for stage in ("risk", "duties"):
        user = stage_user(secure_fused.namespace, stage)
        assert not secure_fused.password_file(user).exists()
        errors = refusal(
            {
                "bootstrap.servers": secure_fused.bootstrap,
                "security.protocol": "SASL_SSL",
                "sasl.mechanisms": "SCRAM-SHA-512",
                "sasl.username": user,
                "sasl.password": "x",
                "ssl.ca.location": str(secure_fused.cafile),
            }
        )
        assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_the_fused_stages_clear_declarations_on_their_own_credentials(
    secure_fused: SecureCluster, schemas: SchemaCatalogue, tmp_path: Path
) -> None:
    namespace = secure_fused.namespace
    schema = schemas.latest("declaration.lodged").schema
    lodged = [from_json(schema, d) for d in generate(3, 0.0, 41, load_reference())]
    base = Settings(
        bootstrap=secure_fused.bootstrap,
        namespace=namespace,
        partitions=2,
        state_dir=tmp_path / "state",
        fused_assessment=True,
    )
    workers = [
        WorkerProcess(base, stage, tmp_path, env=secure_fused.env(stage_user(namespace, stage)))
        for stage in ("intake", "decision")
    ]
    try:
        for worker in workers:
            worker.start()
        tools = secure_fused.settings(tools_user(namespace))
        publish_records(tools, schemas, "declaration.lodged", lodged)
        wanted = ["declaration.accepted", *ASSESSMENTS]
        found = collect(tools, schemas, wanted, until=len(lodged) * len(wanted), events_only=True)
    finally:
        for worker in workers:
            worker.stop()
    mrns = {record["mrn"] for record in found["declaration.accepted"]}
    assert len(mrns) == len(lodged)
    for logical in ASSESSMENTS:
        assert {record["mrn"] for record in found[logical]} == mrns, logical
    for worker in workers:
        log = worker.log_path.read_text(errors="replace")
        assert f"Authenticated as {stage_user(namespace, worker.stage)}" in log
        assert "AuthorizationFailed" not in log and "AUTHORIZATION_FAILED" not in log
