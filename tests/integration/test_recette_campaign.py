"""The project's recette campaign (`tests/recette`, spec §12) on the real broker: every scenario
passes, and together they exercise every rule code, message code and decision path."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.config import ROOT, Settings
from streams.recette.model import load_campaign
from streams.recette.report import coverage, write_reports
from streams.recette.runner import run_campaign

pytestmark = pytest.mark.integration

CAMPAIGN = ROOT / "tests" / "recette"


@pytest.mark.timeout(3600)
def test_the_campaign_passes_and_covers_the_specification(bootstrap: str, tmp_path: Path) -> None:
    scenarios = load_campaign(CAMPAIGN)
    assert len(scenarios) >= 80
    settings = Settings(bootstrap=bootstrap, partitions=3, state_dir=tmp_path / "state")

    results = run_campaign(scenarios, settings, tmp_path, parallel=2, prefix="it-rc")

    # Kept where `make recette` writes them, for whoever reads the CI machine.
    write_reports(results, ROOT / ".local" / "recette-report")
    failed = [
        f"{r.scenario.id} ({r.scenario.path.name}) step {r.failure.index + 1}: {r.failure.message}"
        for r in results
        if r.failure is not None
    ]
    assert not failed, "\n".join(failed)
    covered = coverage(results)
    assert covered.missing() == {}, covered.missing()
