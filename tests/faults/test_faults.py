"""Spec §11 under faults: each case runs the whole pipeline under a sustained load, injects one
fault mid-load, and checks that every lodged message is accounted for, with no second
acceptance, rejection or terminal outcome on any output topic (read_committed).

`make faults` runs this suite alone; `make test` runs it too. The counts of every case are
printed, and appended to `.local/logs/faults.jsonl`.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from streams.codec import SchemaCatalogue
from streams.config import ROOT
from streams.tuning import tuning_stages
from tests.faults.harness import FaultBroker, Report, Supervisor, append_report, run_case

pytestmark = pytest.mark.faults

REPORTS = ROOT / ".local" / "logs" / "faults.jsonl"
# Faust's broker session timeout is 10 s (streams/app.py): a worker paused for longer has its
# partitions taken from it.
PAUSE = 16.0


def record(report: Report, capsys: pytest.CaptureFixture[str]) -> None:
    """The counts of a case, printed past pytest's capture and kept in `REPORTS`."""
    append_report(report, REPORTS)
    with capsys.disabled():
        print(f"\n{report.case}: " + ", ".join(f"{k}={v}" for k, v in vars(report).items()))


def check(report: Report, capsys: pytest.CaptureFixture[str]) -> None:
    record(report, capsys)
    assert report.lodged > 0 and report.accepted > 0
    assert not report.problems(), report.problems()


@pytest.mark.parametrize("stage", ["intake", "risk", "duties", "decision"])
def test_sigkill_of_a_stage_worker_mid_load_and_restart(
    stage: str,
    fault_broker: FaultBroker,
    schemas: SchemaCatalogue,
    tuning: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if stage not in tuning_stages(tuning):
        pytest.skip(f"the {stage} stage does not run under the {tuning} tuning")

    def fault(supervisor: Supervisor, broker: FaultBroker) -> None:
        supervisor.kill_and_restart(stage)

    report = run_case(f"kill-{stage}", fault_broker, schemas, tmp_path, fault, tuning=tuning)
    check(report, capsys)
    assert report.planned_restarts == 1 and report.unplanned_restarts == 0


def test_sigkill_of_the_broker_mid_load_and_restart(
    fault_broker: FaultBroker,
    schemas: SchemaCatalogue,
    tuning: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fault(supervisor: Supervisor, broker: FaultBroker) -> None:
        broker.run("kill")
        time.sleep(2.0)
        broker.run("start")

    check(run_case("kill-broker", fault_broker, schemas, tmp_path, fault, tuning=tuning), capsys)


# Rebalances: the group moves partitions while the workers' transactions are open. Faust ends
# the transactions and begins new ones; inputs wait for the seek to the committed offsets
# (streams.app.LockedCommitConsumer.inputs_open), and the stage carries on without a restart.


# With a second worker, the paused one is a zombie: the other takes its partitions and fences
# its transactions. Resumed, it must neither commit what it had processed nor carry on with
# state the other has moved past: its commit fails as fenced and it restarts, once.
@pytest.mark.parametrize(
    ("case", "shared", "restarts"),
    [("pause-decision", None, 0), ("pause-one-of-two-decision", "decision", 1)],
)
def test_a_worker_paused_past_its_session_timeout_then_resumed(
    case: str,
    shared: str | None,
    restarts: int,
    fault_broker: FaultBroker,
    schemas: SchemaCatalogue,
    tuning: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fault(supervisor: Supervisor, broker: FaultBroker) -> None:
        supervisor.signal("decision", signal.SIGSTOP)
        time.sleep(PAUSE)
        supervisor.signal("decision", signal.SIGCONT)

    report = run_case(
        case, fault_broker, schemas, tmp_path, fault, shared=shared, timeout=120, tuning=tuning
    )
    check(report, capsys)
    assert report.unplanned_restarts <= restarts


def test_two_workers_share_a_stage_and_one_dies(
    fault_broker: FaultBroker,
    schemas: SchemaCatalogue,
    tuning: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def fault(supervisor: Supervisor, broker: FaultBroker) -> None:
        supervisor.kill_for_good("intake")

    report = run_case(
        "two-intake-one-dies",
        fault_broker,
        schemas,
        tmp_path,
        fault,
        shared="intake",
        timeout=120,
        tuning=tuning,
    )
    # The survivor takes back the partitions it gave the joiner, with producers of its own
    # (docs/decisions.md, Exactly-once, 11), and carries on without a restart.
    check(report, capsys)
    assert report.unplanned_restarts == 0


def test_a_second_worker_joins_a_stateful_stage_mid_load(
    fault_broker: FaultBroker,
    schemas: SchemaCatalogue,
    tuning: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Scaling out: half the decision stage's partitions, with their tables, move to a new
    # worker that recovers them from the changelogs while declarations keep coming.
    def fault(supervisor: Supervisor, broker: FaultBroker) -> None:
        supervisor.add_worker("decision")

    report = run_case(
        "join-decision", fault_broker, schemas, tmp_path, fault, timeout=120, tuning=tuning
    )
    check(report, capsys)
    assert report.unplanned_restarts == 0
