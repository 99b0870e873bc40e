"""The named tunings: what they set, and a bad name refused in one line."""

from __future__ import annotations

import pytest

from streams.cli import main
from streams.config import Settings
from streams.tuning import TUNINGS, apply_tuning, tuning_stages


def test_default_tuning_changes_nothing() -> None:
    environ = {"CCI_PARTITIONS": "4"}
    apply_tuning("default", environ)
    assert environ == {"CCI_PARTITIONS": "4"}


def test_every_tuning_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, variables in TUNINGS.items():
        for variable, value in variables.items():
            monkeypatch.setenv(variable, value)
        settings = Settings()
        assert settings.partitions >= 2, f"{name}: two workers per stage must stay possible"


def test_low_latency_overrides_what_the_environment_had() -> None:
    environ = {"CCI_PARTITIONS": "6", "CCI_NAMESPACE": "x"}
    apply_tuning("low-latency", environ)
    assert environ["CCI_PARTITIONS"] == "2" and environ["CCI_NAMESPACE"] == "x"
    assert float(environ["CCI_COMMIT_INTERVAL"]) < Settings().commit_interval


def test_an_unknown_tuning_is_one_line_naming_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "--tuning", "fastest"]) == 2
    _, err = capsys.readouterr()
    assert err.strip().splitlines() == [
        "cci: --tuning: unknown tuning 'fastest': use one of default, low-latency, fused"
    ]


def test_the_fused_tuning_runs_two_stages_and_the_others_four() -> None:
    assert tuning_stages("fused") == ["decision", "intake"]
    assert (
        tuning_stages("default")
        == tuning_stages("low-latency")
        == [
            "decision",
            "duties",
            "intake",
            "risk",
        ]
    )
