"""`cci bench stages`: the capacity of each stage alone, by draining a backlog.

How: generated declarations are lodged in a fresh namespace with no stage running; then each
stage runs alone, one `cci worker --stage S` process, in pipeline order: the intake works off
the lodged declarations, the risk and duties stages the acceptances it wrote, the decision
stage the acceptances, risk and duties assessments together. No COP simulator runs, so the
decision stage sees no COP answers and forwards the declarations that need one without
hearing back: its inputs are those of a declaration's first pass only.

The end of a drain is read from the worker's own inputs counter (`cci_stage_inputs_total` on
its /metrics, summed over topics and outcomes), never from the group's lag: the transaction
markers the stages write count as lag and are never consumed. The clock runs from the first
increase of the counter to its last, so the process start and the group join count in neither
the time nor the CPU; it stops when the counter has stood still for `DRAIN_QUIET` seconds with
every available record handled, or at the stage's share of the budget.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from streams.admin import delete_namespace, ensure_topics
from streams.bench import procstat
from streams.bench.ceilings import encoded_declarations, prefill
from streams.bench.results import CounterSample, StageDrain, drained, stage_drain
from streams.bench.steps import (
    StageInputs,
    StageWorker,
    start_stage_worker,
    stop_stage_workers,
)
from streams.codec import catalogue
from streams.config import ROOT, Settings
from streams.kafka_io import read
from streams.ports import free_port
from streams.topics import topic_name, topology

# Pipeline order: each stage's inputs are the outputs of those before it.
ORDER = ("intake", "risk", "duties", "decision")
LODGED = "declaration.lodged"
SEED = 11
POLL = 0.25
# Kept back from each stage's share for its SIGTERM and the count of the next stage's inputs.
STOP_RESERVE = 10.0
# Below this, a stage would spend its share starting up: not worth starting.
MIN_STAGE_SECONDS = 20.0
Log = Callable[[str], None]
Watch = Callable[[StageWorker], None]


@dataclass
class StagesRun:
    drains: list[StageDrain] = field(default_factory=list)
    lodged: int = 0
    stopped_because: str = ""
    broker_pid: int | None = None


def count_records(settings: Settings, topics: Sequence[str], deadline: float) -> int:
    """The records of `topics` a read-committed consumer sees, from the start to the end:
    unlike offsets, no transaction markers and no aborted outputs."""
    return sum(1 for _ in read(settings, topics, idle_timeout=5.0, deadline=deadline))


def drain_stage(
    settings: Settings,
    stage: str,
    available: int,
    deadline: float,
    broker_pid: int | None,
    log_dir: Path,
    poll: float = POLL,
    watch: Watch | None = None,
) -> StageDrain:
    """Start one worker of `stage`, sample its inputs counter until it has drained
    `available` records or the deadline, stop it (SIGTERM, then the grace) and judge the
    samples. `watch` is called with the worker once it is started (a profiler attaches)."""
    port = free_port()
    started = time.monotonic()
    worker = start_stage_worker(settings, stage, 0, port, log_dir)
    if watch is not None:
        watch(worker)
    counter = StageInputs({stage: port}, settings.web_host)
    samples: list[CounterSample] = []
    finished = False
    exited: int | None = None
    try:
        tick = started
        while time.monotonic() < deadline:
            exited = worker.process.poll()
            if exited is not None:
                break
            inputs = counter.read().get(stage)
            # The CPU right after the counter, so that both describe the same moment.
            samples.append(
                CounterSample(
                    at=time.monotonic(),
                    inputs=inputs,
                    worker_cpu=procstat.cpu_seconds(worker.process.pid),
                    broker_cpu=None if broker_pid is None else procstat.cpu_seconds(broker_pid),
                )
            )
            if drained(samples, available):
                finished = True
                break
            # On a fixed schedule, so that a slow scrape does not stretch the next interval.
            tick += poll
            time.sleep(max(0.0, tick - time.monotonic()))
    finally:
        stop_stage_workers([worker])
    result = stage_drain(stage, available, samples, started, finished)
    if exited is not None:
        result.error = (
            f"the worker stopped (exit {exited}), see {log_dir}/{stage}-0-{settings.namespace}.log"
        )
    return result


def run_stages(
    settings: Settings,
    count: int,
    deadline: float,
    seed: int = SEED,
    log: Log = print,
    log_dir: Path = ROOT / ".local" / "bench" / "logs",
    last: str | None = None,
    watch: Watch | None = None,
) -> StagesRun:
    """Lodge `count` declarations, then drain them stage by stage, each stage getting an even
    share of the time left, up to stage `last` (all when None), which `watch` is called with;
    the namespace and its state are deleted after, whatever happens."""
    running = topology(settings.fused_assessment)
    stages = ORDER if last is None else ORDER[: ORDER.index(last) + 1]
    stages = tuple(s for s in stages if s in running)
    run = StagesRun()
    log_dir.mkdir(parents=True, exist_ok=True)
    schemas = catalogue(settings.schemas_dir)
    source = topic_name(settings.namespace, LODGED)
    try:
        ensure_topics(settings)
        log(f"stages: generating and lodging {count} declarations into {source}")
        prefill(settings, source, encoded_declarations(settings, schemas, count, seed))
        run.lodged = count_records(settings, [source], deadline)
        run.broker_pid = procstat.local_broker_pid()
        for position, stage in enumerate(stages):
            share = (deadline - time.monotonic()) / (len(stages) - position)
            if share < MIN_STAGE_SECONDS + STOP_RESERVE:
                run.stopped_because = f"the time budget leaves no room for the {stage} stage"
                break
            topics = [topic_name(settings.namespace, logical) for logical in running[stage].reads]
            available = count_records(settings, topics, deadline)
            if available == 0:
                run.stopped_because = f"nothing for the {stage} stage to read"
                break
            log(f"stage {stage}: alone on {available} records")
            drain = drain_stage(
                settings,
                stage,
                available,
                time.monotonic() + share - STOP_RESERVE,
                run.broker_pid,
                log_dir,
                watch=watch if stage == stages[-1] else None,
            )
            run.drains.append(drain)
            cpu = drain.cpu_ms_per_input
            log(
                f"stage {stage}: {drain.inputs} inputs, {drain.per_second:.0f}/s, "
                + ("-" if cpu is None else f"{cpu:.2f}")
                + " ms CPU per input"
                + (f" ({drain.error})" if drain.error else "")
            )
            if drain.error and drain.inputs < available:
                # The stages after it would read a partial backlog: their rates would mean
                # little, and the budget is better left unspent.
                run.stopped_because = f"the {stage} stage did not drain: {drain.error}"
                break
        else:
            run.stopped_because = "every stage drained"
    finally:
        delete_namespace(settings)
        shutil.rmtree(settings.state_dir / settings.namespace, ignore_errors=True)
    return run
