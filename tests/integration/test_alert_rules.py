"""The Prometheus configuration and alert rules, checked by promtool from Debian's package:
every alert has unit tests (`deploy/prometheus/tests`) that make it fire and stay silent."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from streams.config import ROOT

pytestmark = pytest.mark.integration

PROMETHEUS = ROOT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def promtool() -> str:
    subprocess.run(["bash", str(PROMETHEUS / "install.sh")], check=True)
    return "promtool"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=False, cwd=PROMETHEUS)


def test_the_configuration_and_the_rules_are_valid(promtool: str) -> None:
    checked = run(promtool, "check", "config", "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_every_alert_has_unit_tests_and_they_pass(promtool: str) -> None:
    rules = yaml.safe_load((PROMETHEUS / "rules" / "cci-alerts.yml").read_text())
    alerts = {r["alert"] for group in rules["groups"] for r in group["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS / "tests" / "cci-alerts-test.yml").read_text())
    tested = {
        case["alertname"]
        for test in tests["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == tested, f"alerts never shown firing: {sorted(alerts - tested)}"

    result = run(promtool, "test", "rules", str(Path("tests") / "cci-alerts-test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
