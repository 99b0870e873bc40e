"""The Faust settings a stage runs with, where they differ from the shared client settings."""

from __future__ import annotations

from streams.app import make_app
from streams.config import Settings
from streams.faust_settings import client_settings


def test_a_stage_lingers_until_its_commit_and_other_apps_do_not() -> None:
    # A stage's outputs are visible at its commit only, which flushes what lingers: lingering
    # until then costs no latency. An app without transactions has no commit to flush it.
    settings = Settings(namespace="ns", commit_interval=0.25, store="memory://")
    assert make_app("risk", settings).conf.producer_linger == 0.25
    assert client_settings(settings, "ns-bench-alo")["producer_linger"] == 0.005
