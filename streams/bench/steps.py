"""The steps: the real stages and the COP simulator under generated load offered at increasing
rates, each step a bounded number of seconds, until the decided rate stops following the
offered rate (`results.saturation`) or the time runs out.

What it reuses from `cci demo`: the generated load (`generated_load`: about 10 % of the
declarations with defects, risk profiles and random selection giving controls), the wait for
the groups and the read-committed `Feed`. What it does not: the demo's `Flow` decodes every
event of every topic, which at hundreds of declarations per second would take a core from the
stages it measures. Here only the acceptances are decoded, and only their MRN and key.

The workers it starts itself, `cci worker --stage S` `--workers` times per stage, as replicas
of a deployment: the copies of a stage share its consumer group and so its partitions, and
each has its own web port and state directory, as each pod has its own volume. A stage's CPU
and inputs are the sums over its copies.

The COP simulator runs as its own process (`cci simulate-cop`), so that its CPU is counted
apart from the benchmark's.

Times, all wall clock: a latency runs from the lodging (the time the benchmark hands the
message to its producer) to the moment the benchmark's read-committed reader receives the
declaration's first decision: `declaration.released`, `declaration.not-released` (written by
the decision stage) or `declaration.rejected` (written by the intake). A decision's Kafka
timestamp is taken when the stage sends it, before the transaction that carries it commits;
nobody downstream can see it until then, so the receipt, not the timestamp, is when the
declaration is decided. The reader is read whenever the benchmark is not sleeping, and the
next step's declarations are generated in a thread meanwhile, so a receipt is late by a few
milliseconds at most. The decided rate of a step counts decisions by their Kafka timestamp,
which places each in the step that produced it. Event time (`occurredAt`) is not used: the
generator spreads it over minutes and the stages carry it forward from cause to effect.

Between steps the next step's declarations are generated (the generator is too slow to run
inline at the higher rates); the pipeline drains meanwhile, so each step starts near empty.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from fastavro import parse_schema, schemaless_reader

from streams.admin import admin_client, delete_namespace, ensure_topics
from streams.bench import procstat
from streams.bench.results import (
    MAX_WORKERS,
    StepResult,
    group_lag,
    group_totals,
    saturation,
    worker_deltas,
)
from streams.codec import HEADER_SIZE, SchemaCatalogue, catalogue
from streams.config import ROOT, Settings
from streams.cop_simulator import GROUP as SIMULATOR_GROUP
from streams.demo import COP_MIX, Feed, generated_load, wait_for_groups
from streams.kafka_io import end_offsets, producer, reader
from streams.ports import free_port_run
from streams.reference import load_reference
from streams.topics import STAGES, declaration_key, event_key, group_id, topic_name, topology

DEFAULT_RATES = (50, 100, 200, 400, 800, 1600, 3200)
INVALID_SHARE = 0.1
SEED = 23
LODGED = "declaration.lodged"
ACCEPTED = "declaration.accepted"
REJECTED = "declaration.rejected"
DECISIONS = {
    "declaration.released": "released",
    "declaration.not-released": "not-released",
    "declaration.invalidated": "invalidated",
    REJECTED: "rejected",
}
# After a step's last lodging, how long decisions of it may still arrive (a hop is about a
# second, outputs become visible at each stage's commit) before the step is judged.
SETTLE = 3.0
# At the end, how long to wait for the last step's declarations, and the silence that ends it.
DRAIN = 20.0
QUIET = 3.0
STARTUP = 180.0
# How long the workers get to close their stores and transactions before they are killed.
STOP_GRACE = 40.0
Log = Callable[[str], None]


@dataclass
class Ledger:
    """The lodgings and decisions seen so far, joined per declaration key."""

    accepted_reader: Any  # fastavro reader schema: the acceptance's MRN and key only
    accepted_writer: Any
    topics: dict[str, str]  # topic → logical name
    lodged_ms: dict[str, int] = field(default_factory=dict)  # key → lodging timestamp
    step_of: dict[str, int] = field(default_factory=dict)  # key → step index
    key_of_mrn: dict[str, str] = field(default_factory=dict)
    decided: dict[str, int] = field(default_factory=dict)  # key → first decision received (ms)
    decisions: list[tuple[int, str]] = field(default_factory=list)  # (timestamp, outcome)
    waiting: dict[str, int] = field(default_factory=dict)  # MRN decided before its acceptance
    last_decision: float = 0.0  # time.monotonic() of the last decision read

    def absorb(
        self, topic: str, key: bytes | None, value: bytes | None, timestamp: int, received: int
    ) -> None:
        """One message read: `timestamp` is its Kafka timestamp, `received` when it was read
        (epoch ms)."""
        logical = self.topics[topic]
        if logical == ACCEPTED:
            if value is None:
                return
            record: Any = schemaless_reader(
                io.BytesIO(value[HEADER_SIZE:]), self.accepted_writer, self.accepted_reader
            )
            mrn = str(record["mrn"])
            self.key_of_mrn[mrn] = declaration_key(record["declarantEori"], record["lrn"])
            if mrn in self.waiting:
                self._decide(self.key_of_mrn[mrn], self.waiting.pop(mrn))
            return
        text = (key or b"").decode(errors="replace")
        self.decisions.append((timestamp, DECISIONS[logical]))
        self.last_decision = time.monotonic()
        if logical == REJECTED:
            self._decide(text, received)
        elif text in self.key_of_mrn:
            self._decide(self.key_of_mrn[text], received)
        else:
            self.waiting[text] = received

    def _decide(self, key: str, received: int) -> None:
        self.decided.setdefault(key, received)

    def in_window(self, start_ms: int, end_ms: int) -> list[str]:
        return [o for ts, o in self.decisions if start_ms <= ts < end_ms]

    def cohort(self, step: int) -> tuple[list[float], int]:
        """Latencies (ms) of the step's declarations decided so far, and how many are not."""
        latencies: list[float] = []
        undecided = 0
        for key, index in self.step_of.items():
            if index != step:
                continue
            decided = self.decided.get(key)
            if decided is None:
                undecided += 1
            else:
                latencies.append(float(decided - self.lodged_ms[key]))
        return latencies, undecided


def ledger_for(settings: Settings, schemas: SchemaCatalogue) -> Ledger:
    writer = schemas.latest(ACCEPTED)
    wanted = ("mrn", "lrn", "declarantEori")
    # Both schemas as fastavro marks them parsed (see `SchemaVersion.codec_schema`): the ledger
    # reads every acceptance on the cores the pipeline runs on, and must not parse them each time.
    reader_schema = parse_schema(
        {
            "type": "record",
            "name": writer.schema["name"],
            "fields": [f for f in writer.schema["fields"] if f["name"] in wanted],
        }
    )
    topics = {topic_name(settings.namespace, ACCEPTED): ACCEPTED}
    topics.update({topic_name(settings.namespace, logical): logical for logical in DECISIONS})
    return Ledger(reader_schema, writer.codec_schema, topics)


# The most messages a `pump` reads once its time is up, so that a reader that cannot keep up
# still lets the lodging go on.
PUMP_BATCH = 5_000


def pump(feed: Feed, ledger: Ledger, seconds: float) -> None:
    """Read what the feed has, and whatever arrives for `seconds` more (none: only what has
    already arrived)."""
    until = time.monotonic() + seconds
    late = 0  # messages read past `until`
    while True:
        remaining = until - time.monotonic()
        message = feed.poll(min(0.05, remaining) if remaining > 0 else 0.0)
        if message is None:
            if remaining <= 0:
                return
            continue
        received = int(time.time() * 1000)
        ledger.absorb(message.topic, message.key, message.value, message.timestamp, received)
        if remaining <= 0:
            late += 1
            if late >= PUMP_BATCH:
                return


def prepare_while_reading(
    settings: Settings,
    schemas: SchemaCatalogue,
    count: int,
    seed: int,
    feed: Feed,
    ledger: Ledger,
) -> list[tuple[str, bytes, bytes]]:
    """`prepare` in a thread while this one reads the feed: generating a step takes seconds,
    and the previous step's last decisions must be received when they arrive, not after."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        prepared = pool.submit(prepare, settings, schemas, count, seed)
        while not prepared.done():
            pump(feed, ledger, 0.05)
        return prepared.result()


def handled_inputs(metrics_text: str) -> int:
    """The sum of `cci_stage_inputs_total` in a stage's /metrics text: every input it handled,
    whatever its topic and outcome. Unlike offsets, it counts no transaction markers."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("cci_stage_inputs_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


class StageInputs:
    """Inputs handled so far by each worker process, read from its /metrics."""

    def __init__(self, ports: dict[str, int], host: str) -> None:
        self.urls = {label: f"http://{host}:{port}/metrics" for label, port in ports.items()}

    def read(self) -> dict[str, int]:
        found = {}
        for label, url in self.urls.items():
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    found[label] = handled_inputs(response.read().decode())
            except (OSError, ValueError):
                continue  # a process that does not answer leaves its stage without a count
        return found


class Offsets:
    """Committed offsets of the stages' groups and the ends of their inputs."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin = admin_client(settings)
        self.consumer = reader(settings)
        ns = settings.namespace
        running = topology(settings.fused_assessment)
        self.inputs = {
            stage: [topic_name(ns, logical) for logical in spec.reads]
            for stage, spec in running.items()
        }
        self.inputs["cop-simulator"] = [
            topic_name(ns, "cop.forwarded"),
            topic_name(ns, "declaration.status"),
        ]
        self.groups = {stage: group_id(ns, stage) for stage in running}
        self.groups["cop-simulator"] = group_id(ns, SIMULATOR_GROUP)

    def committed(self, group: str) -> dict[tuple[str, int], int]:
        futures = self.admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
        try:
            found = futures[group].result()
        except KafkaException:
            return {}
        return {
            (tp.topic, tp.partition): tp.offset for tp in found.topic_partitions if tp.offset >= 0
        }

    def ends(self, topics: Sequence[str]) -> dict[tuple[str, int], int]:
        result = {}
        for topic in topics:
            for partition in range(self.settings.partitions):
                tp = TopicPartition(topic, partition)
                result[(topic, partition)] = int(
                    self.consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1]
                )
        return result

    def snapshot(self) -> tuple[dict[str, int], dict[str, int]]:
        """Per stage: the total committed offset of its inputs, and its backlog."""
        totals: dict[str, int] = {}
        lags: dict[str, int] = {}
        for stage, group in self.groups.items():
            committed = self.committed(group)
            totals[stage] = sum(committed.values())
            lags[stage] = group_lag(committed, self.ends(self.inputs[stage]))
        return totals, lags

    def close(self) -> None:
        self.consumer.close()


class CpuMeter:
    """CPU seconds of the processes a step is charged with, by process label."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = pids

    def read(self) -> dict[str, float]:
        found: dict[str, float] = {}
        for name, pid in self.pids.items():
            seconds = procstat.own_cpu_seconds() if pid == os.getpid() else None
            if pid is not None and seconds is None:
                seconds = procstat.cpu_seconds(pid)
            if seconds is not None:
                found[name] = seconds
        return found


def lodge_step(
    settings: Settings,
    client: Any,
    messages: Sequence[tuple[str, bytes, bytes]],
    rate: float,
    index: int,
    feed: Feed,
    ledger: Ledger,
) -> tuple[int, float]:
    """Produce `messages` at `rate` per second, open loop, reading the feed in between; return
    the step's start (epoch ms) and length (s)."""
    topic = topic_name(settings.namespace, LODGED)
    start = time.time()
    produced = 0
    while produced < len(messages):
        now = time.time()
        due = min(len(messages), int((now - start) * rate) + 1)
        stamp = int(now * 1000)
        while produced < due:
            key_text, key, value = messages[produced]
            try:
                client.produce(topic, key=key, value=value)
            except BufferError:
                client.poll(0.01)
                break
            ledger.lodged_ms[key_text] = stamp
            ledger.step_of[key_text] = index
            produced += 1
        client.poll(0)
        pump(feed, ledger, 0.0)
        if produced < len(messages):
            wait = start + produced / rate - time.time()
            if wait > 0:
                time.sleep(min(wait, 0.005))
    seconds = max(time.time() - start, len(messages) / rate)
    return int(start * 1000), seconds


def prepare(
    settings: Settings, schemas: SchemaCatalogue, count: int, seed: int
) -> list[tuple[str, bytes, bytes]]:
    reference = load_reference(settings.reference_dir)
    load = generated_load(settings, schemas, reference, count, INVALID_SHARE, 0, seed)
    prepared = []
    for record in load.records:
        key = event_key(LODGED, record) or b""
        prepared.append((key.decode(), key, schemas.encode(LODGED, record)))
    return prepared


def start_simulator(settings: Settings, log_dir: Path, seed: int) -> subprocess.Popen[bytes]:
    log_path = log_dir / f"cop-simulator-{settings.namespace}.log"
    with log_path.open("ab") as handle:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "simulate-cop",
                "--mix",
                f"{COP_MIX},seed={seed}",
                "--namespace",
                settings.namespace,
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )


@dataclass
class StageWorker:
    """One `cci worker --stage S` process of the run."""

    stage: str
    index: int  # among the stage's copies
    port: int
    process: subprocess.Popen[bytes]

    @property
    def label(self) -> str:
        return f"{self.stage}-{self.index}"


def worker_groups(workers: Sequence[StageWorker]) -> dict[str, list[str]]:
    """Stage → the labels of its processes, for `results.worker_deltas`."""
    groups: dict[str, list[str]] = {}
    for worker in workers:
        groups.setdefault(worker.stage, []).append(worker.label)
    return groups


def start_stage_workers(settings: Settings, copies: int, log_dir: Path) -> list[StageWorker]:
    """`copies` processes of each stage, all in the stage's group. Ports come from one free run
    so that they collide neither with each other nor with a `cci demo` running beside."""
    stages = sorted(topology(settings.fused_assessment))
    base = free_port_run(len(stages) * copies)
    started: list[StageWorker] = []
    try:
        for position, stage in enumerate(stages):
            for index in range(copies):
                port = base + position * copies + index
                started.append(start_stage_worker(settings, stage, index, port, log_dir))
    except BaseException:
        stop_stage_workers(started)
        raise
    return started


def start_stage_worker(
    settings: Settings, stage: str, index: int, port: int, log_dir: Path
) -> StageWorker:
    """One `cci worker --stage S` process on web port `port`, its output in `log_dir`."""
    # Under the namespace's state directory, so that the run's clean-up removes it.
    state = settings.state_dir / settings.namespace / f"{stage}-{index}"
    log_path = log_dir / f"{stage}-{index}-{settings.namespace}.log"
    with log_path.open("ab") as handle:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streams.cli",
                "worker",
                "--stage",
                stage,
                "--namespace",
                settings.namespace,
            ],
            env={**os.environ, "CCI_WEB_PORT": str(port), "CCI_STATE_DIR": str(state)},
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    return StageWorker(stage, index, port, process)


def stop_stage_workers(workers: Sequence[StageWorker], grace: float = STOP_GRACE) -> None:
    """SIGTERM all at once (they close in parallel), then kill what outlives the grace."""
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    until = time.monotonic() + grace
    for worker in workers:
        try:
            worker.process.wait(max(0.1, until - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.process.kill()
            with suppress(subprocess.TimeoutExpired):
                worker.process.wait(5)


@dataclass
class StepsRun:
    steps: list[StepResult] = field(default_factory=list)
    startup_seconds: float = 0.0
    stopped_because: str = ""
    broker_pid: int | None = None


def run_steps(
    settings: Settings,
    rates: Sequence[float],
    step_seconds: float,
    deadline: float,
    log: Log = print,
    log_dir: Path = ROOT / ".local" / "bench" / "logs",
    seed: int = SEED,
    workers: int = 1,
) -> StepsRun:
    """Start the pipeline in the namespace, `workers` processes per stage, offer each rate for
    `step_seconds` until saturation or the deadline, stop everything and delete the namespace
    and its state."""
    if not 1 <= workers <= MAX_WORKERS:
        raise ValueError(f"workers per stage: 1 to {MAX_WORKERS}, not {workers}")
    run = StepsRun()
    schemas = catalogue(settings.schemas_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    ensure_topics(settings)
    ledger = ledger_for(settings, schemas)
    start = end_offsets(settings, list(ledger.topics))
    began = time.monotonic()
    stage_workers = start_stage_workers(settings, workers, log_dir)
    handled = StageInputs({w.label: w.port for w in stage_workers}, settings.web_host)
    simulator = start_simulator(settings, log_dir, seed)
    offsets = Offsets(settings)
    try:

        def alive() -> bool:
            return simulator.poll() is None and all(w.process.poll() is None for w in stage_workers)

        groups = [*offsets.groups.values()]
        log(
            f"steps: waiting for the stages ({workers} worker{'s' if workers > 1 else ''} each) "
            f"and the COP simulator in {settings.namespace}"
        )
        # Every copy must hold its partitions before the first step: a copy joining later
        # would rebalance the group in the middle of a measurement.
        members = {
            group_id(settings.namespace, stage): workers
            for stage in topology(settings.fused_assessment)
        }
        if not wait_for_groups(
            settings, groups, min(deadline, began + STARTUP), alive, members=members
        ):
            run.stopped_because = "the stages or the simulator did not join their groups"
            return run
        run.startup_seconds = time.monotonic() - began
        run.broker_pid = procstat.local_broker_pid()
        meter = CpuMeter(
            {
                **{w.label: w.process.pid for w in stage_workers},
                "cop-simulator": simulator.pid,
                "broker": run.broker_pid,
                "bench": os.getpid(),
            }
        )
        cpu_groups: dict[str, list[str]] = {
            **worker_groups(stage_workers),
            **{name: [name] for name in ("cop-simulator", "broker", "bench")},
        }
        client = producer(settings)
        with closing(Feed(settings, start)) as feed:
            run.stopped_because = _steps(
                settings,
                schemas,
                rates,
                step_seconds,
                deadline,
                seed,
                run,
                client,
                feed,
                ledger,
                offsets,
                handled,
                meter,
                cpu_groups,
                alive,
                log,
            )
            _drain(feed, ledger, deadline)
        for index, step in enumerate(run.steps):
            step.latencies_ms, step.cohort_undecided = ledger.cohort(index)
    finally:
        with suppress(Exception):
            offsets.close()
        for process in (simulator,):
            if process.poll() is None:
                process.terminate()
                with suppress(subprocess.TimeoutExpired):
                    process.wait(20)
                if process.poll() is None:
                    process.kill()
        stop_stage_workers(stage_workers)
        with suppress(Exception):
            delete_namespace(settings)
        shutil.rmtree(settings.state_dir / settings.namespace, ignore_errors=True)
    return run


def _steps(
    settings: Settings,
    schemas: SchemaCatalogue,
    rates: Sequence[float],
    step_seconds: float,
    deadline: float,
    seed: int,
    run: StepsRun,
    client: Any,
    feed: Feed,
    ledger: Ledger,
    offsets: Offsets,
    handled: StageInputs,
    meter: CpuMeter,
    cpu_groups: Mapping[str, Sequence[str]],
    alive: Callable[[], bool],
    log: Log,
) -> str:
    """Run the steps; return why they stopped."""
    _warm_up(settings, schemas, rates[0], seed, client, feed, ledger, run.broker_pid, deadline, log)
    for index, rate in enumerate(rates):
        count = max(1, round(rate * step_seconds))
        # Generation runs at about 1,000 declarations a second here: count it in the budget.
        needed = count / 1000 + step_seconds + SETTLE + 5
        if time.monotonic() + needed > deadline:
            return f"the time budget leaves no room for the {rate:g}/s step"
        messages = prepare_while_reading(settings, schemas, count, seed + 1 + index, feed, ledger)
        pump(feed, ledger, 0.5)
        totals_before, _ = offsets.snapshot()
        inputs_before = handled.read()
        cpu_before = meter.read()
        start_ms, seconds = lodge_step(settings, client, messages, rate, index, feed, ledger)
        cpu_after = meter.read()
        inputs_after = handled.read()
        totals_after, lags = offsets.snapshot()
        client.flush(30)
        if not alive():
            return "the stages or the simulator stopped"
        pump(feed, ledger, SETTLE)
        window = ledger.in_window(start_ms, start_ms + round(seconds * 1000))
        outcomes: dict[str, int] = {}
        for outcome in window:
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        cpu = worker_deltas(cpu_before, cpu_after, cpu_groups)
        stage_groups = {s: labels for s, labels in cpu_groups.items() if s in STAGES}
        inputs = worker_deltas(inputs_before, inputs_after, stage_groups)
        step = StepResult(
            rate=rate,
            seconds=seconds,
            lodged=len(messages),
            decided=len(window),
            outcomes=outcomes,
            cpu_seconds=group_totals(cpu),
            # The stages' own count; the simulator has none, its offsets stand in (with the
            # transaction markers of the topics it reads).
            inputs={
                **{s: round(total) for s, total in group_totals(inputs, 0).items()},
                "cop-simulator": totals_after["cop-simulator"]
                - totals_before.get("cop-simulator", 0),
            },
            worker_cpu_seconds={
                s: [round(v, 2) for v in values] for s, values in cpu.items() if s in STAGES
            },
            worker_inputs={s: [round(v) for v in values] for s, values in inputs.items()},
            lag=lags,
        )
        run.steps.append(step)
        step.saturated = saturation(run.steps)
        log(
            f"step {rate:g}/s: offered {step.offered:.0f}/s, "
            f"decided {step.decided_per_second:.0f}/s, backlog {sum(lags.values())}"
            + (f" — saturated: {step.saturated}" if step.saturated else "")
        )
        if step.saturated:
            return f"saturated at {rate:g}/s: {step.saturated}"
    return "every rate was offered"


WARM_UP_SECONDS = 5.0
WARM_UP_WAIT = 60.0
WARM_UP_STEP = -1
# A broker started minutes before (`make bench` starts it) spends up to a core compiling its
# hot paths (the JVM's JIT): measured here, 0.9–1.0 cores at 20–40 declarations/s in the first
# steps against 0.3–0.5 once warm, which took the p99 at half the peak from 0.77 s to 1.1–1.5 s.
# The steps start once the broker's CPU per round of load has stopped falling.
SETTLE_ROUND = 10.0
SETTLE_MAX = 180.0
SETTLE_FALL = 0.15  # a round using this much less CPU than the one before: still warming


def broker_settled(shares: Sequence[float]) -> bool:
    """Whether the broker's CPU share over rounds of the same load has stopped falling: the
    last round used no less than `1 - SETTLE_FALL` of the one before."""
    return len(shares) >= 2 and shares[-1] >= (1 - SETTLE_FALL) * shares[-2]


def _warm_up(
    settings: Settings,
    schemas: SchemaCatalogue,
    rate: float,
    seed: int,
    client: Any,
    feed: Feed,
    ledger: Ledger,
    broker: int | None,
    deadline: float,
    log: Log,
) -> None:
    """Lodge a few seconds at the first rate, unrecorded, and wait for their decisions: a
    stage's first inputs pay for what it sets up once (a transactional producer per input
    partition, the stores), which is not what the first step should measure. Then, when the
    broker is local (`broker` its pid), lodge at the same rate in rounds of `SETTLE_ROUND`
    seconds until its CPU settles (`broker_settled`), for `SETTLE_MAX` seconds at most."""
    messages = prepare(settings, schemas, max(20, round(rate * WARM_UP_SECONDS)), seed)
    log(f"steps: warming up with {len(messages)} declarations")
    lodge_step(settings, client, messages, rate, WARM_UP_STEP, feed, ledger)
    shares: list[float] = []
    began = time.monotonic()
    while broker is not None and not broker_settled(shares):
        if time.monotonic() - began >= SETTLE_MAX or time.monotonic() + 2 * SETTLE_ROUND > deadline:
            break
        count = max(1, round(rate * SETTLE_ROUND))
        round_seed = seed + 10_001 + len(shares)
        messages = prepare_while_reading(settings, schemas, count, round_seed, feed, ledger)
        before = procstat.cpu_seconds(broker)
        _, seconds = lodge_step(settings, client, messages, rate, WARM_UP_STEP, feed, ledger)
        after = procstat.cpu_seconds(broker)
        if before is None or after is None:
            break
        shares.append((after - before) / seconds)
    if shares:
        log("steps: broker CPU over the warm-up rounds: " + ", ".join(f"{x:.2f}" for x in shares))
    client.flush(30)
    _drain(feed, ledger, min(deadline, time.monotonic() + WARM_UP_WAIT), quiet=QUIET)


def _drain(feed: Feed, ledger: Ledger, deadline: float, quiet: float = QUIET) -> None:
    """Let the last declarations be decided: until nothing is decided for `QUIET` seconds,
    `DRAIN` seconds at most, never past the deadline."""
    until = min(time.monotonic() + DRAIN, deadline)
    ledger.last_decision = time.monotonic()
    while time.monotonic() < until and time.monotonic() - ledger.last_decision < quiet:
        pump(feed, ledger, 0.5)
