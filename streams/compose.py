"""The Docker Compose deployment of the pipeline, generated from the stage catalogue.

`render()` derives `deploy/compose.yaml` and the Prometheus targets of the compose network from
`streams.topics.STAGES`, so a new stage gets its worker service and its scrape target with no
hand edit. The files are committed; `make compose` regenerates them and
`python -m streams.compose --check` (run by the unit tests) fails when they are stale.

It also writes `deploy/compose-fused.yaml`, the pipeline in the fused topology
(`Settings.fused_assessment`, docs/decisions.md, Topology; the stages of
`streams.topics.topology(True)`), with its own targets. It is a whole file rather than an
override of the first: Compose can add to a service in an override but cannot take one away, and
a whole file is checked against the schema as `docker compose` reads it. It is its own Compose
project (`cci-fused`), with its own broker volume: a topology is changed only on a new or drained
namespace, and a four-stage project's risk and duty containers, left behind as orphans, would go
on writing assessments beside the decision stage's.

What is derived rather than written down a second time:
- the Kafka image's tag is `kafka.version` of `deploy/local/pom.xml`, and the broker's settings
  are those of `deploy/local/server.properties.in` (only the listeners and paths differ), so the
  compose broker behaves as the one the tests run on;
- the worker image's tag is the package version of `pyproject.toml`;
- the workers' host ports are those of `cci worker --stage all` (decision 6066, duties 6067, ...);
- Prometheus runs the project's own `deploy/prometheus/prometheus.yml` and rules, unchanged: only
  its file-discovery target file is generated here, naming the compose services.
"""

from __future__ import annotations

import json
import sys
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import yaml

from streams import generated
from streams.topics import STAGES, topology

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = "deploy/compose.yaml"
TARGETS_FILE = "deploy/compose/prometheus-targets/cci.json"
FUSED_COMPOSE_FILE = "deploy/compose-fused.yaml"
# A directory of its own: Prometheus discovers every file of the directory mounted as its
# targets, and a stage that does not run would be scraped as down and raise CciStageDown.
FUSED_TARGETS_FILE = "deploy/compose/prometheus-targets-fused/cci.json"
REGENERATE = "make compose"

PROMETHEUS_IMAGE = "prom/prometheus:v3.7.0"
GRAFANA_IMAGE = "grafana/grafana:12.2.1"

NAMESPACE = "cci"
PROJECT = "cci"
FUSED_PROJECT = "cci-fused"
WORKER_PORT = 6066  # the image's CCI_WEB_PORT; every worker has its own network address
KAFKA_SERVICE = "kafka"
KAFKA_PORT = 9092
CONTROLLER_PORT = 9093
# Published on the host beside, not over, a local broker of `make broker` on 9092.
HOST_KAFKA_PORT = 19092
TOPICS_SERVICE = "topics"
# A fixed cluster id: the broker's storage is formatted once with it, on the first start of its
# volume, and must be the same on every later start.
CLUSTER_ID = "Y2NpLWNvbXBvc2UtMDAwMQ"

# Settings of server.properties.in that name the local machine; the compose network has its own.
_LOCAL_ONLY = {
    "listeners",
    "advertised.listeners",
    "controller.quorum.bootstrap.servers",
    "listener.security.protocol.map",
    "log.dirs",
}


def _pom_kafka_version(root: Path) -> str:
    pom = ET.parse(root / "deploy" / "local" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    version = pom.findtext("m:properties/m:kafka.version", namespaces=ns)
    if not version:
        raise ValueError("deploy/local/pom.xml: no kafka.version property")
    return version.strip()


def kafka_image(root: Path = ROOT) -> str:
    return f"apache/kafka:{_pom_kafka_version(root)}"


def cci_image(root: Path = ROOT) -> str:
    project = tomllib.loads((root / "pyproject.toml").read_text("utf-8"))["project"]
    return f"{project['name']}:{project['version']}"


def _local_broker_settings(root: Path) -> dict[str, str]:
    text = (root / "deploy" / "local" / "server.properties.in").read_text("utf-8")
    settings: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "!")):
            continue
        key, _, value = line.partition("=")
        if key.strip() not in _LOCAL_ONLY:
            settings[key.strip()] = value.strip()
    return settings


def kafka_env_name(key: str) -> str:
    """The apache/kafka image's environment name of a broker setting: `_` doubled, `-` tripled,
    `.` as `_`, upper case, prefixed `KAFKA_`."""
    return "KAFKA_" + key.replace("_", "__").replace("-", "___").replace(".", "_").upper()


def host_port(stage: str) -> int:
    """The host port of `stage`'s worker: the port `cci worker --stage all` gives it
    (`streams.worker.stage_port`), so URLs in the docs are the same either way. The same in
    both topologies, as there."""
    return WORKER_PORT + sorted(STAGES).index(stage)


def _kafka(root: Path) -> dict[str, Any]:
    settings = _local_broker_settings(root)
    settings.update(
        {
            # Three listeners: the compose network, the KRaft controller, and the host, where
            # the `cci` of a checkout can lodge declarations (KAFKA_BOOTSTRAP=127.0.0.1:19092).
            "listeners": (
                f"PLAINTEXT://:{KAFKA_PORT},CONTROLLER://:{CONTROLLER_PORT},"
                f"HOST://:{HOST_KAFKA_PORT}"
            ),
            "advertised.listeners": (
                f"PLAINTEXT://{KAFKA_SERVICE}:{KAFKA_PORT},HOST://127.0.0.1:{HOST_KAFKA_PORT}"
            ),
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,HOST:PLAINTEXT"
            ),
            # Static voters: the image formats its storage without `--standalone`, which the
            # dynamic quorum (`controller.quorum.bootstrap.servers`) of the local broker needs.
            "controller.quorum.voters": f"{settings['node.id']}@{KAFKA_SERVICE}:{CONTROLLER_PORT}",
            # The image's data volume, owned by its user.
            "log.dirs": "/var/lib/kafka/data",
        }
    )
    environment = {"CLUSTER_ID": CLUSTER_ID}
    environment.update({kafka_env_name(k): v for k, v in settings.items()})
    return {
        "image": kafka_image(root),
        "hostname": KAFKA_SERVICE,
        "environment": environment,
        "ports": [f"127.0.0.1:{HOST_KAFKA_PORT}:{HOST_KAFKA_PORT}"],
        "volumes": ["kafka-data:/var/lib/kafka/data"],
        "healthcheck": {
            # An answer to an API versions request: the broker accepts clients, which a process
            # that is merely up, or a port that is open, does not prove.
            "test": [
                "CMD",
                "/opt/kafka/bin/kafka-broker-api-versions.sh",
                "--bootstrap-server",
                f"localhost:{KAFKA_PORT}",
            ],
            "interval": "10s",
            "timeout": "20s",
            "retries": 12,
            "start_period": "30s",
        },
        "restart": "unless-stopped",
    }


def _cci(root: Path, command: list[str], fused: bool) -> dict[str, Any]:
    """A service of the worker image. Each gets its own dicts: one shared object would be
    written as a YAML anchor, which tools that edit compose files handle poorly."""
    environment = {
        "KAFKA_BOOTSTRAP": f"{KAFKA_SERVICE}:{KAFKA_PORT}",
        "CCI_NAMESPACE": NAMESPACE,
    }
    if fused:
        # Every process of the project, not only the stages: one setting for the whole
        # deployment, as the Kubernetes ConfigMap gives it.
        environment["CCI_FUSED_ASSESSMENT"] = "true"
    return {
        "image": cci_image(root),
        "build": {"context": "..", "dockerfile": "Dockerfile"},
        "command": command,
        "environment": environment,
    }


def _after_topics() -> dict[str, Any]:
    # Created by `topics` and not by Faust at start-up: a consumer whose metadata lacks a
    # changelog topic is assigned none of its partitions (streams.topics.all_topics).
    return {
        KAFKA_SERVICE: {"condition": "service_healthy"},
        TOPICS_SERVICE: {"condition": "service_completed_successfully"},
    }


def _topics(root: Path, fused: bool) -> dict[str, Any]:
    service = _cci(root, ["topics", "create"], fused)
    service["depends_on"] = {KAFKA_SERVICE: {"condition": "service_healthy"}}
    # Creates what is missing and exits; run again on every `up`, it creates nothing.
    service["restart"] = "on-failure"
    return service


def _worker(root: Path, stage: str, fused: bool) -> dict[str, Any]:
    service = _cci(root, ["worker", "--stage", stage], fused)
    service["depends_on"] = _after_topics()
    service["ports"] = [f"127.0.0.1:{host_port(stage)}:{WORKER_PORT}"]
    # The table state survives a restart of the container; the worker itself discards it when
    # the last one did not stop cleanly (streams.worker.prepare_state_dir).
    service["volumes"] = [f"{stage}-state:/var/lib/cci"]
    service["healthcheck"] = {
        "test": [
            "CMD",
            "python",
            "-c",
            "import urllib.request; "
            f"urllib.request.urlopen('http://127.0.0.1:{WORKER_PORT}/ready', timeout=4)",
        ],
        "interval": "15s",
        "timeout": "5s",
        "retries": 3,
        "start_period": "60s",
    }
    service["restart"] = "unless-stopped"
    # Time for the open transaction to commit and the clean-shutdown marker to be written.
    service["stop_grace_period"] = "30s"
    return service


def _tool(root: Path, command: list[str], fused: bool) -> dict[str, Any]:
    service = _cci(root, command, fused)
    service["depends_on"] = _after_topics()
    service["restart"] = "unless-stopped"
    return service


def services(root: Path = ROOT, fused: bool = False) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {
        KAFKA_SERVICE: _kafka(root),
        TOPICS_SERVICE: _topics(root, fused),
    }
    for stage in topology(fused):
        result[stage] = _worker(root, stage, fused)
    # Event time (spec §8): without ticks no COP timeout nor lapse ever fires.
    result["clock"] = _tool(root, ["clock", "--interval", "1s"], fused)
    # The customs office of presentation: without it every forwarded declaration waits.
    result["cop-simulator"] = _tool(root, ["simulate-cop"], fused)
    targets_dir = Path(FUSED_TARGETS_FILE if fused else TARGETS_FILE).parent
    result["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        # The project's configuration as is; its relative paths (rules/, targets/) resolve
        # against the directory of the configuration file.
        "volumes": [
            "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro",
            "./prometheus/rules:/etc/prometheus/rules:ro",
            f"./{targets_dir.relative_to('deploy').as_posix()}:/etc/prometheus/targets:ro",
        ],
        "ports": ["127.0.0.1:9090:9090"],
        "restart": "unless-stopped",
    }
    result["grafana"] = {
        "image": GRAFANA_IMAGE,
        "environment": {
            # Browsing the boards needs no account on a machine of one's own; editing them
            # still does (and provisioned boards are edited as code anyway).
            "GF_AUTH_ANONYMOUS_ENABLED": "true",
            "GF_AUTH_ANONYMOUS_ORG_ROLE": "Viewer",
        },
        "volumes": [
            "./grafana/provisioning:/etc/grafana/provisioning:ro",
            "./grafana/dashboards:/var/lib/grafana/dashboards/cci:ro",
        ],
        "ports": ["127.0.0.1:3000:3000"],
        "depends_on": {"prometheus": {"condition": "service_started"}},
        "restart": "unless-stopped",
    }
    return result


def compose(root: Path = ROOT, fused: bool = False) -> dict[str, Any]:
    stages = topology(fused)
    return {
        "name": FUSED_PROJECT if fused else PROJECT,
        "services": services(root, fused),
        "volumes": {name: {} for name in ["kafka-data", *(f"{s}-state" for s in stages)]},
    }


def targets(fused: bool = False) -> list[dict[str, Any]]:
    """The file-discovery targets of `deploy/prometheus/prometheus.yml` on the compose network,
    with the labels `make run` gives its workers: the stages that run."""
    return [
        {
            "targets": [f"{s}:{WORKER_PORT}" for s in topology(fused)],
            "labels": {"namespace": NAMESPACE},
        }
    ]


_HEADER = """\
# Generated by streams/compose.py from the stage catalogue (streams/topics.py): edit the code and
# run `{regenerate}`, never this file; a unit test fails when it is stale.
#
# {summary}
#
#   docker compose -f {file} up --build -d
#   .venv/bin/cci generate --count 100 | KAFKA_BOOTSTRAP=127.0.0.1:{host_kafka} \\
#       .venv/bin/cci publish declaration.lodged -
#   curl http://127.0.0.1:{decision_port}/declarations/<MRN>   # the decision worker's status query
#   Prometheus http://127.0.0.1:9090, Grafana http://127.0.0.1:3000
#   docker compose -f {file} down -v   # -v: also forget every event and table
#
# Workers start once the broker answers and `topics` has created the namespace's topics.
# Worker ports on the host: {ports}.
"""


def _yaml(document: dict[str, Any]) -> str:
    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)


_SUMMARY = """\
The whole pipeline on one machine: a KRaft Kafka broker, the topics, one worker per stage, the
clock, the simulated customs office of presentation, Prometheus with the project's alert rules
and Grafana with its dashboards."""

_FUSED_SUMMARY = f"""\
The whole pipeline on one machine in the fused topology (CCI_FUSED_ASSESSMENT=true,
docs/decisions.md, Topology): the decision stage assesses risk and duties itself, so only the
intake and decision stages run. Otherwise as {COMPOSE_FILE}, but a separate project
({FUSED_PROJECT}) with its own broker volume. Both use the same host ports: stop one before
starting the other."""


def _header(fused: bool) -> str:
    stages = topology(fused)
    summary = _FUSED_SUMMARY if fused else _SUMMARY
    return _HEADER.format(
        regenerate=REGENERATE,
        summary=summary.replace("\n", "\n# "),
        file=FUSED_COMPOSE_FILE if fused else COMPOSE_FILE,
        host_kafka=HOST_KAFKA_PORT,
        decision_port=host_port("decision") if "decision" in stages else WORKER_PORT,
        ports=", ".join(f"{s} {host_port(s)}" for s in sorted(stages)),
    )


def render(root: Path = ROOT) -> dict[str, str]:
    """Path relative to the repository → text of every generated file, the same bytes for the
    same code and inputs."""
    return {
        COMPOSE_FILE: _header(False) + "\n" + _yaml(compose(root)),
        TARGETS_FILE: json.dumps(targets(), indent=2) + "\n",
        FUSED_COMPOSE_FILE: _header(True) + "\n" + _yaml(compose(root, fused=True)),
        FUSED_TARGETS_FILE: json.dumps(targets(fused=True), indent=2) + "\n",
    }


def stale(root: Path = ROOT) -> list[str]:
    """The files of `render()` that are missing under `root` or differ from it."""
    return generated.stale(render(root), root)


GENERATOR = generated.Generator(
    prog="python -m streams.compose",
    description=f"Write {COMPOSE_FILE}, {FUSED_COMPOSE_FILE} and the Prometheus targets of their"
    " compose networks.",
    what="compose file",
    regenerate=REGENERATE,
    render=render,
    default_dir=ROOT,
    option="--root",
    option_help="repository to read from and write to",
)
main = GENERATOR.main


if __name__ == "__main__":
    sys.exit(main())
