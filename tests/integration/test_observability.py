"""Observability on real parts: a Prometheus from Debian's package scrapes the four stage workers
while they clear a load on the real broker; every PromQL expression of every dashboard panel and
of every alert parses, and the dashboards' return data."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from streams.codec import SchemaCatalogue
from streams.config import ROOT
from streams.generator import generate
from streams.jsonform import from_json
from streams.kafka_io import publish_records
from streams.ports import free_port
from streams.prometheus_local import LocalPrometheus, write_targets
from streams.reference import load_reference
from streams.stages import BUILDERS
from tests.integration.pipeline import BASE, TWO_HOURS, Pipeline, running_pipeline

pytestmark = pytest.mark.integration

DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"
ALERTS = ROOT / "deploy" / "prometheus" / "rules" / "cci-alerts.yml"
# Nothing fails in a healthy run: these panels are empty until something does.
EMPTY_WHEN_HEALTHY = ("cci_stage_errors_total", 'outcome="failed"')


@pytest.fixture(scope="module")
def observed(
    bootstrap: str, schemas: SchemaCatalogue, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Pipeline, LocalPrometheus]]:
    subprocess.run(["bash", str(ROOT / "deploy" / "prometheus" / "install.sh")], check=True)
    directory = tmp_path_factory.mktemp("observability")
    with running_pipeline(bootstrap, schemas, directory / "pipeline") as pipeline:
        server = LocalPrometheus(directory / "prometheus", free_port(), scrape_interval="1s")
        ports = [worker.port for worker in pipeline.workers.values()]
        (directory / "prometheus" / "targets").mkdir(parents=True)
        write_targets(directory / "prometheus", "it", ports, {"namespace": "it"})
        server.start()
        try:
            drive(pipeline)
            wait_for_scrapes(server, len(ports))
            yield pipeline, server
        finally:
            server.stop()


def drive(pipeline: Pipeline) -> None:
    """Every kind of outcome once: release, control and no release, rejection, dead letter,
    a timeout fired by a tick."""
    released, controlled, silent = pipeline.lodge_many(count=3)
    pipeline.send("cop.risk-result", mrn=released, control="NONE", occurredAt=BASE)
    pipeline.send("cop.risk-result", mrn=controlled, control="PHYSICAL", occurredAt=BASE)
    pipeline.expect("trader.notification", mrn=controlled, messageCode="IE460")
    pipeline.send("control.result", mrn=controlled, result="B1", officeRole="COP", occurredAt=BASE)
    schema = pipeline.schemas.latest("declaration.lodged").schema
    [invalid] = [from_json(schema, d) for d in generate(1, 1.0, 5, load_reference())]
    publish_records(pipeline.settings, pipeline.schemas, "declaration.lodged", [invalid])
    pipeline.expect("declaration.rejected", lrn=invalid["lrn"])
    pipeline.send("cop.risk-result", mrn="26FR0000000000000R", control="NONE", occurredAt=BASE)
    pipeline.tick(BASE + TWO_HOURS)
    pipeline.expect("declaration.released", mrn=silent)
    pipeline.expect("declaration.not-released", mrn=controlled)
    pipeline.expect("dead-letter", reason="unknown-mrn")


def wait_for_scrapes(server: LocalPrometheus, workers: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = server.query('count(up{job="cci"} == 1)')
        result = answer.get("data", {}).get("result", [])
        if result and int(float(result[0]["value"][1])) == workers:
            time.sleep(12)  # several scrapes after the load, so that rates have two points
            return
        time.sleep(1)
    raise AssertionError(f"Prometheus did not scrape the {workers} workers: {answer}")


def panel_expressions() -> list[tuple[str, str]]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                found.append((f"{path.name}: {panel['title']}", target["expr"]))
    return found


def alert_expressions() -> list[tuple[str, str]]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [(r["alert"], r["expr"]) for g in rules["groups"] for r in g["rules"] if "alert" in r]


def test_every_dashboard_panel_returns_data(observed: tuple[Pipeline, LocalPrometheus]) -> None:
    _, server = observed
    empty = []
    for where, expression in panel_expressions():
        expression = expression.replace("$__range", "1h")
        variants = [expression.replace("$stage", stage) for stage in sorted(BUILDERS)]
        answers = [server.query(v) for v in dict.fromkeys(variants)]
        for answer in answers:
            assert answer["status"] == "success", f"{where}: {expression}: {answer}"
        healthy_empty = any(marker in expression for marker in EMPTY_WHEN_HEALTHY)
        if not healthy_empty and not any(answer["data"]["result"] for answer in answers):
            empty.append(f"{where}: {expression}")
    assert not empty, "panels without data:\n" + "\n".join(empty)


def test_every_alert_expression_parses_and_its_metrics_exist(
    observed: tuple[Pipeline, LocalPrometheus],
) -> None:
    _, server = observed
    for alert, expression in alert_expressions():
        answer = server.query(expression)
        assert answer["status"] == "success", f"{alert}: {answer}"
        for metric in set(re.findall(r"\b(cci_[a-z_]+|up)\b", expression)):
            series = server.query(f'count({{__name__="{metric}"}})')["data"]["result"]
            assert series, f"{alert} reads {metric}, which no worker exposes"


def test_prometheus_loaded_the_project_rules(observed: tuple[Pipeline, LocalPrometheus]) -> None:
    _, server = observed
    with urllib.request.urlopen(f"{server.url}/api/v1/rules") as answer:
        groups = json.loads(answer.read())["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert loaded == {alert for alert, _ in alert_expressions()}


def test_the_targets_file_is_read_back(tmp_path: Path) -> None:
    write_targets(tmp_path, "x", [1, 2], {"namespace": "n"})
    assert json.loads((tmp_path / "targets" / "x.json").read_text()) == [
        {"targets": ["127.0.0.1:1", "127.0.0.1:2"], "labels": {"namespace": "n"}}
    ]


def test_every_worker_reports_that_the_broker_answers(
    observed: tuple[Pipeline, LocalPrometheus],
) -> None:
    pipeline, server = observed
    answer = server.query('count(cci_broker_up{job="cci"} == 1)')["data"]["result"]
    assert answer and int(float(answer[0]["value"][1])) == len(pipeline.workers)
    trips = server.query('sum(cci_broker_request_seconds_count{job="cci"})')["data"]["result"]
    assert trips and float(trips[0]["value"][1]) > 0
