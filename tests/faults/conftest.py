"""The fault suite's broker: a second local Kafka under .local/faults, on free ports, which
the suite kills and restarts. The jars come from the same Maven cache as the main broker's."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from streams.codec import SchemaCatalogue, catalogue
from streams.config import ROOT, Settings
from streams.ports import free_port
from streams.tuning import TUNINGS
from tests.faults.harness import FaultBroker

LOCAL = ROOT / ".local" / "faults"

pytestmark = pytest.mark.faults


@pytest.fixture(scope="module")
def fault_broker() -> Iterator[FaultBroker]:
    # Free ports, so that the suite never reuses a broker it did not start (whose kill would
    # then kill nothing). Stopped with the suite's module rather than with the whole session:
    # `make test` runs the suite first, and the broker would take CPU from every later test.
    broker = FaultBroker(port=free_port(), controller_port=free_port(), local_dir=LOCAL)
    broker.run("reset")  # a fresh log: the suite's broker keeps nothing between runs
    broker.run("start")
    yield broker
    broker.run("reset")


@pytest.fixture(scope="session")
def schemas() -> SchemaCatalogue:
    return catalogue(Settings().schemas_dir)


@pytest.fixture(scope="module", params=list(TUNINGS))
def tuning(request: pytest.FixtureRequest) -> str:
    """Every case under every tuning (streams.tuning): the guarantees must hold with the
    settings a tuning trades latency with. Module scope: pytest runs all the cases of one
    tuning, then all of the next."""
    return str(request.param)
