"""The benchmark harness end to end on the real broker, with a tiny message count: the
ceilings fill a namespace, every hop passes every message through, the namespace is gone
after. No rate is asserted: speed is measured by `make bench`, not tested."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from streams.admin import wait_for_broker
from streams.bench.ceilings import run_ceilings
from streams.config import Settings

pytestmark = pytest.mark.integration


def test_ceilings_pass_every_message_and_clean_up(bootstrap: str, tmp_path: Path) -> None:
    settings = Settings(
        bootstrap=bootstrap,
        namespace=f"it-bench-{uuid.uuid4().hex[:8]}",
        partitions=3,
        state_dir=tmp_path / "state",
    )
    results = run_ceilings(
        settings, 50, time.monotonic() + 55, log=lambda line: None, log_dir=tmp_path / "logs"
    )
    assert [r.name for r in results] == ["client", "faust-eos", "faust-alo"]
    for result in results:
        assert result.error is None, result.error
        assert result.messages == 50
        assert result.per_second > 0
    left = wait_for_broker(settings).list_topics(timeout=10).topics
    assert not [t for t in left if t.startswith(settings.namespace)]
