"""One fault case: the whole pipeline under a sustained load, a fault injected mid-load, and an
account of every lodged message at the end (spec §11).

The pipeline runs as in production: one `cci worker` process per stage (two for the stage a
case shares), the COP simulator answering, and a supervisor that restarts a worker which exits
by itself, as Kubernetes would. The account is the one `make run` prints (`streams.demo.Flow`),
read with `isolation.level=read_committed`: every lodged message has exactly one intake outcome,
every accepted declaration has at most one terminal outcome and, once event time has moved past
the COP deadlines, has one unless it is type D waiting for goods never presented.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from streams.admin import delete_namespace, ensure_topics
from streams.clock import tick_record
from streams.codec import SchemaCatalogue
from streams.config import ROOT, Settings
from streams.cop_simulator import GROUP as SIMULATOR_GROUP
from streams.cop_simulator import parse_mix, run_simulator
from streams.demo import (
    COP_MIX,
    QUIET,
    TICK_MARGIN,
    Feed,
    Flow,
    Watch,
    awaits_goods,
    generated_load,
    outcome_counts,
    unexplained,
    wait_for_groups,
    watched_topics,
)
from streams.kafka_io import end_offsets, produce, producer, publish_records
from streams.reference import load_reference
from streams.stages import BUILDERS
from streams.topics import group_id, topic_name
from streams.tuning import tuning_env, tuning_stages
from tests.integration.conftest import WorkerProcess

KAFKA_SCRIPT = ROOT / "deploy" / "local" / "kafka.sh"
LODGED = "declaration.lodged"


@dataclass(frozen=True)
class FaultBroker:
    """The fault suite's own local broker, so that killing it disturbs nobody else's."""

    port: int
    controller_port: int
    local_dir: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, command: str) -> None:
        env = {
            **os.environ,
            "CCI_LOCAL": str(self.local_dir),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
        }
        env.pop("KAFKA_BOOTSTRAP", None)
        subprocess.run(["bash", str(KAFKA_SCRIPT), command], env=env, check=True)


@dataclass
class Load:
    """Declarations lodged at a steady rate from a thread; 10 % of them spoilt, some garbage."""

    count: int = 900
    rate: float = 60.0  # declarations per second
    garbage: int = 12
    seed: int = 11


@dataclass
class Report:
    """The counts of one case, printed by the suite and checked by its test."""

    case: str
    tuning: str = "default"  # streams.tuning: the settings the workers ran with
    lodged: int = 0
    accepted: int = 0
    rejected: int = 0
    dead_letters: int = 0
    released: int = 0
    not_released: int = 0
    invalidated: int = 0
    awaiting_goods: int = 0
    without_intake_outcome: int = 0
    second_intake_outcomes: int = 0
    second_terminal_outcomes: int = 0
    reused_mrns: int = 0
    undecided: int = 0
    undecided_states: dict[str, int] = field(default_factory=dict)
    undecided_examples: list[str] = field(default_factory=list)
    later_dead_letters: dict[str, int] = field(default_factory=dict)
    planned_restarts: int = 0
    unplanned_restarts: int = 0
    simulator_restarts: int = 0
    fault_at_s: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds, and whether each ended
    seconds: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.without_intake_outcome:
            found.append(f"{self.without_intake_outcome} lodged messages without intake outcome")
        if self.second_intake_outcomes:
            found.append(f"{self.second_intake_outcomes} second intake outcomes")
        if self.second_terminal_outcomes:
            found.append(f"{self.second_terminal_outcomes} second terminal outcomes")
        if self.reused_mrns:
            found.append(f"{self.reused_mrns} MRNs allocated twice")
        if self.undecided:
            found.append(
                f"{self.undecided} accepted declarations undecided, by latest status "
                f"{self.undecided_states}, e.g. {self.undecided_examples}"
            )
        if self.later_dead_letters:
            found.append(f"dead letters after intake: {self.later_dead_letters}")
        return found


class Supervisor:
    """The worker processes of a namespace, restarted when they exit by themselves."""

    def __init__(
        self,
        settings: Settings,
        log_dir: Path,
        shared: str | None,
        env: Mapping[str, str] | None = None,
        stages: Sequence[str] = tuple(sorted(BUILDERS)),
    ) -> None:
        self.settings = settings
        self.log_dir = log_dir
        self.env = dict(env or {})  # over the settings, for every worker (a tuning)
        self.workers: dict[str, list[WorkerProcess]] = {}
        for stage in stages:
            copies = 2 if stage == shared else 1
            # Each process has its own state directory, as each pod has its own volume.
            self.workers[stage] = [
                WorkerProcess(
                    settings,
                    stage,
                    log_dir,
                    env={**self.env, "CCI_STATE_DIR": str(settings.state_dir / f"{stage}-{i}")},
                )
                for i in range(copies)
            ]
        self.retired: set[int] = set()  # killed for good by the case: not restarted
        self.planned = 0
        self.unplanned = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._watch, name="supervisor", daemon=True)

    def all(self) -> list[WorkerProcess]:
        return [w for copies in self.workers.values() for w in copies]

    def start(self) -> None:
        # A shared stage's second worker joins once the first runs, holding every partition,
        # as when a stage scales out: the rebalance moves partitions between running members.
        for copy in range(max(len(copies) for copies in self.workers.values())):
            starting = [copies[copy] for copies in self.workers.values() if len(copies) > copy]
            for worker in starting:
                worker.launch()
            for worker in starting:
                worker.wait_ready()
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            with self._lock:
                for worker in self.all():
                    process = worker.process
                    if id(worker) in self.retired or process is None:
                        continue
                    if process.poll() is not None:
                        self.unplanned += 1
                        worker.launch()

    def kill_and_restart(self, stage: str, pause: float = 1.0) -> None:
        with self._lock:
            worker = self.workers[stage][0]
            worker.kill()
            self.planned += 1
            time.sleep(pause)
            worker.launch()

    def add_worker(self, stage: str) -> None:
        """One more worker of `stage`, as an autoscaler adds one: it takes partitions, and
        their tables, from the running one."""
        with self._lock:
            copies = self.workers[stage]
            worker = WorkerProcess(
                self.settings,
                stage,
                self.log_dir,
                env={
                    **self.env,
                    "CCI_STATE_DIR": str(self.settings.state_dir / f"{stage}-{len(copies)}"),
                },
            )
            copies.append(worker)
            worker.launch()

    def kill_for_good(self, stage: str) -> None:
        # The worker that joined last: the survivor takes back the partitions it gave away.
        with self._lock:
            worker = self.workers[stage][-1]
            self.retired.add(id(worker))
            worker.kill()

    def signal(self, stage: str, signum: int) -> None:
        process = self.workers[stage][0].process
        assert process is not None
        process.send_signal(signum)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(5)
        for worker in self.all():
            if worker.process is not None and worker.process.poll() is None:
                worker.process.send_signal(signal.SIGCONT)  # a paused worker cannot stop
            worker.stop()


class SupervisedSimulator:
    """The COP simulator in a thread, restarted when the broker's absence stops it: it commits
    only what it answered, so a restart answers again at most what was not committed, with the
    same event ids."""

    def __init__(self, settings: Settings, flow: Flow) -> None:
        self.settings = settings
        self.flow = flow
        self.restarts = 0
        self.error: Exception | None = None  # never set: failures are restarts here
        self._stop = threading.Event()
        self._answers: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cop-simulator", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                run_simulator(
                    self.settings, self.flow.mix, stop=self._stop, on_answer=self._answered
                )
            except Exception:
                self.restarts += 1
                self._stop.wait(1.0)

    def _answered(self, logical: str, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._answers.append(str(record["eventId"]))

    def answered(self) -> list[str]:
        with self._lock:
            drained, self._answers = self._answers, []
        return drained

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)


Fault = Callable[[Supervisor, FaultBroker], None]


@contextmanager
def namespace(bootstrap: str, directory: Path, partitions: int) -> Iterator[Settings]:
    settings = Settings(
        bootstrap=bootstrap,
        namespace=f"faults-{uuid.uuid4().hex[:8]}",
        partitions=partitions,
        state_dir=directory / "state",
    )
    ensure_topics(settings)
    try:
        yield settings
    finally:
        delete_namespace(settings)


class Lodging:
    """The load, lodged at its rate from a thread, with garbage interleaved so that it too
    meets the fault."""

    def __init__(self, settings: Settings, schemas: SchemaCatalogue, load: Load) -> None:
        self.settings = settings
        self.schemas = schemas
        self.load = load
        reference = load_reference(settings.reference_dir)
        generated = generated_load(
            settings, schemas, reference, load.count, 0.1, load.garbage, load.seed
        )
        self.records, self.bad = generated.records, generated.bad
        self.keys = generated.keys()
        self.last_occurred_at: datetime = max(r["occurredAt"] for r in self.records)
        self._thread = threading.Thread(target=self._lodge, name="lodging", daemon=True)

    @property
    def expected(self) -> int:
        return len(self.keys)

    def start(self) -> None:
        self._thread.start()

    def done(self) -> bool:
        return self._thread.ident is not None and not self._thread.is_alive()

    def _lodge(self) -> None:
        client = producer(self.settings)
        topic = topic_name(self.settings.namespace, LODGED)
        size = max(1, int(self.load.rate / 5))
        slices = [self.records[i : i + size] for i in range(0, len(self.records), size)]
        began = time.monotonic()
        for n, records in enumerate(slices):
            publish_records(self.settings, self.schemas, LODGED, records, client=client)
            for key, value in self.bad[n :: len(slices)]:
                produce(client, topic, key=key, value=value)
            time.sleep(max(0.0, began + (n + 1) * size / self.load.rate - time.monotonic()))
        client.flush(120)


def run_case(
    name: str,
    broker: FaultBroker,
    schemas: SchemaCatalogue,
    directory: Path,
    fault: Fault,
    fault_after: float = 6.0,
    shared: str | None = None,
    load: Load | None = None,
    timeout: float = 240.0,
    tuning: str = "default",
) -> Report:
    load = load or Load()
    report = Report(case=name, tuning=tuning)
    began = time.monotonic()
    env = tuning_env(tuning)
    partitions = int(env.get("CCI_PARTITIONS", Settings.model_fields["partitions"].default))
    with namespace(broker.bootstrap, directory, partitions) as settings:
        stages = tuning_stages(tuning)
        supervisor = Supervisor(settings, directory, shared, env, stages)
        flow: Flow | None = None
        simulator: SupervisedSimulator | None = None
        try:
            supervisor.start()
            start = end_offsets(settings, list(watched_topics(settings.namespace)))
            lodging = Lodging(settings, schemas, load)
            flow = Flow(schemas, parse_mix(f"{COP_MIX},seed={load.seed}"), lodging.keys)
            simulator = SupervisedSimulator(settings, flow)
            simulator.start()
            groups = [group_id(settings.namespace, s) for s in (*stages, SIMULATOR_GROUP)]
            assert wait_for_groups(settings, groups, time.monotonic() + 90, lambda: True)
            with closing(Feed(settings, start)) as feed:
                watch = Watch(settings, flow, feed, simulator, load.seed, lambda: True)  # type: ignore[arg-type]
                deadline = time.monotonic() + timeout
                lodging.start()
                injected = threading.Timer(fault_after, fault, (supervisor, broker))
                injected.start()
                intake_done = partial(_intake_done, flow, lodging)
                phase = Phases(report)
                phase("intake", watch.until(intake_done, deadline))
                injected.join()
                phase("settled", watch.until(watch.settled, deadline))
                # Past every COP deadline: silent COPs time out, every wait but the goods ends.
                jump = lodging.last_occurred_at + settings.cop_response_timeout + TICK_MARGIN
                publish_records(settings, schemas, "clock.tick", [tick_record(jump)])
                watch.last_change = time.monotonic()
                phase("decided", watch.until(partial(_decided, watch), deadline))
                # Room for a late second outcome to show up.
                watch.until(lambda: False, time.monotonic() + 2 * QUIET)
            expected = lodging.expected
        finally:
            if simulator is not None:
                simulator.stop()
                report.simulator_restarts = simulator.restarts
            supervisor.stop()
            report.planned_restarts = supervisor.planned
            report.unplanned_restarts = supervisor.unplanned
        assert flow is not None
        report.fault_at_s = fault_after
        fill(report, flow, expected)
    report.seconds = round(time.monotonic() - began, 1)
    return report


class Phases:
    """How long each wait of a case took, and whether it ended or timed out."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.began = time.monotonic()

    def __call__(self, name: str, ended: bool) -> None:
        now = time.monotonic()
        self.report.phases[name] = round(now - self.began, 1) if ended else -1.0
        self.began = now


def _intake_done(flow: Flow, lodging: Lodging) -> bool:
    return lodging.done() and flow.intake.total >= lodging.expected


def _decided(watch: Watch) -> bool:
    return watch.quiet() and not unexplained(watch.flow.declarations.values())


def fill(report: Report, flow: Flow, expected: int) -> None:
    declarations = list(flow.declarations.values())
    counts = outcome_counts(declarations)
    report.lodged = expected
    report.accepted = flow.intake.accepted
    report.rejected = flow.intake.rejected
    report.dead_letters = sum(flow.intake.dead_letters.values())
    report.released = counts["RELEASED"]
    report.not_released = sum(n for k, n in counts.items() if k.startswith("NOT_RELEASED"))
    report.invalidated = counts["INVALIDATED"]
    report.awaiting_goods = sum(1 for d in declarations if awaits_goods(d))
    report.without_intake_outcome = len(flow.without_intake_outcome())
    report.second_intake_outcomes = flow.intake_duplicates
    report.second_terminal_outcomes = sum(d.outcomes - 1 for d in declarations if d.outcomes > 1)
    report.reused_mrns = flow.reused_mrns
    stuck = unexplained(declarations)
    report.undecided = len(stuck)
    states = Counter(flow.declarations[m].state or "NO_STATUS" for m in stuck)
    report.undecided_states = dict(states)
    report.undecided_examples = stuck[:5]
    report.later_dead_letters = dict(flow.later_dead_letters)


def append_report(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(asdict(report)) + "\n")
