"""`make run`: start the stages and a simulated COP on the broker, lodge a realistic load, let the
whole clearance flow run, and show what happened.

The steps, and why:

1. The stages start as in production (one worker process each) and the COP simulator runs in a
   thread of this process, with a seeded mix of silent COPs, controls, goods never presented and
   unsatisfactory controls, so that every branch of spec §8-§9 is taken.
2. Once every stage and the simulator have joined their consumer groups (so that the latency
   does not count the joins; a stage restarted on the tables of an earlier run may still be
   recovering them), generated declarations and garbage are lodged and the intake outcomes are
   counted.
3. As a trader would, a seeded ~2% of the accepted declarations are invalidated, at event time
   acceptance + 1 minute, before the COP answers (at + 5 minutes). Each is sent as soon as the
   decision stage reports the declaration (its first `declaration.status`), so that the
   wall-clock order matches the event-time order as far as can be: sent on the acceptance
   itself, it would race the acceptance to the decision stage, which dead-letters events of an
   MRN it does not know yet (spec §9).
4. The decision flow runs until it settles: every accepted declaration forwarded or decided,
   every answer the simulator owes on the broker, then a few quiet seconds.
5. Event time jumps past the COP response timeout with one `clock.tick`, so that the silent
   COPs time out, and the flow settles again. It does not jump the 30 days to the lapse:
   pre-lodged declarations whose goods never come stay waiting, as they would in production.
6. The summary counts the intake outcomes, the decisions, what still waits, and the latency
   from lodging to decision of the decisions made before the jump (after it, the latency
   would measure the demo's own pause, not the pipeline).

Nothing here decides anything: the demo only reads the topics, from the offsets they had before
it lodged, and counts only the outcomes of what it lodged, so that a namespace used before still
gives this run's numbers.
"""

from __future__ import annotations

import queue
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams import prometheus_local
from streams.admin import admin_client, ensure_topics
from streams.clock import tick_record
from streams.codec import MAGIC, SchemaCatalogue, catalogue
from streams.config import ROOT, Settings
from streams.cop_simulator import GROUP as SIMULATOR_GROUP
from streams.cop_simulator import Mix, answer_forward, answer_status, draw, parse_mix, run_simulator
from streams.decision import INVALIDATED, NOT_RELEASED, RELEASED
from streams.generator import generate
from streams.jsonform import from_json
from streams.kafka_io import Received, end_offsets, producer, publish_records, reader
from streams.reference import ReferenceData, load_reference
from streams.run_report import percentile
from streams.topics import (
    STAGES,
    dead_letter_topic,
    declaration_key,
    event_key,
    group_id,
    topic_name,
    topology,
)
from streams.worker import stage_port

# How the simulated COP and officers behave (see `cop_simulator.parse_mix`); the demo's seed is
# appended, so that one seed replays the whole run.
COP_MIX = "silence=0.05,documentary=0.05,physical=0.02,not-presented=0.1,b1=0.2"
INVALIDATION_SHARE = 0.02
INVALIDATION_DELAY = timedelta(minutes=1)
INVALIDATION_REASON = "trader request"
# Stages commit every 0.5 s and the simulator polls every 0.5 s: a hop of the flow takes about a
# second, so 3 s without a decision, a status change or an answer means nothing is in flight.
QUIET = 3.0
# A flow where nothing at all moved for this long is stuck, not slow. Intake gets longer: a
# stage restarted on existing state may take half a minute to recover its tables.
STALL = 20.0
INTAKE_STALL = 60.0
# The tick lands this far past the last COP deadline, so that every deadline is strictly due.
TICK_MARGIN = timedelta(seconds=1)

ACCEPTED_EVENT = "declaration.accepted"
REJECTED_EVENT = "declaration.rejected"
LODGED_EVENT = "declaration.lodged"
FORWARDED_EVENT = "cop.forwarded"
PRESENTED_EVENT = "cop.goods-presented"
STATUS_EVENT = "declaration.status"
INVALIDATION_EVENT = "invalidation.requested"
DEAD_LETTER = "dead-letter"
OUTCOME_EVENTS = {
    "declaration.released": RELEASED,
    "declaration.not-released": NOT_RELEASED,
    "declaration.invalidated": INVALIDATED,
}
NO_STATUS = "NO_STATUS"
WAITING_STATES = ("FORWARDED", "RISK_ASSESSED", "ACCEPTED", NO_STATUS)
UNDER_CONTROL = "UNDER_CONTROL"


@dataclass
class Intake:
    """What became of the lodged messages: every one ends as one of these (spec §11)."""

    accepted: int = 0
    rejected: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.accepted + self.rejected + sum(self.dead_letters.values())


@dataclass
class Declaration:
    """What the demo has read about one accepted declaration."""

    mrn: str
    key: str  # declarant EORI / LRN: joins the acceptance to its lodged message
    accepted_at: datetime  # event time
    pre_lodged: bool  # type D: released only once its goods are presented
    presented: bool = False
    forwarded: bool = False
    state: str | None = None  # the latest `declaration.status`
    outcome: str | None = None  # RELEASED, NOT_RELEASED or INVALIDATED
    reason: str | None = None  # of NOT_RELEASED
    decided_at: datetime | None = None  # event time of the outcome
    decided_ts: int | None = None  # Kafka timestamp of the outcome, epoch ms
    outcomes: int = 0  # terminal events read; more than one breaks spec §9
    invalidation_requested: bool = False
    invalidation_dead_lettered: bool = False


def outcome_counts(declarations: Iterable[Declaration]) -> Counter[str]:
    """Each declaration counted once: under its outcome (`NOT_RELEASED:<reason>` for a refusal),
    else under its latest status, `NO_STATUS` if the decision stage never reported it."""
    counts: Counter[str] = Counter()
    for d in declarations:
        if d.outcome == NOT_RELEASED:
            counts[f"{NOT_RELEASED}:{d.reason}"] += 1
        else:
            counts[d.outcome or d.state or NO_STATUS] += 1
    return counts


def awaits_goods(d: Declaration) -> bool:
    """Undecided because the goods of a pre-lodged declaration were never presented: the one
    wait the demo expects, since it never jumps the 30 days to the lapse."""
    return d.outcome is None and d.pre_lodged and not d.presented and d.state is not None


def unexplained(declarations: Iterable[Declaration]) -> list[str]:
    """The MRNs neither decided nor waiting for their goods: once the COP has answered or timed
    out, nothing else should hold a declaration back."""
    return sorted(d.mrn for d in declarations if d.outcome is None and not awaits_goods(d))


def decision_latencies(
    declarations: Iterable[Declaration], lodged_ts: Mapping[str, int], before: datetime | None
) -> list[int]:
    """Wall-clock ms from the lodged message to its outcome message (Kafka timestamps of both),
    for the outcomes whose event time is before `before` (None: all of them)."""
    latencies = []
    for d in declarations:
        lodged = lodged_ts.get(d.key)
        if d.decided_ts is None or d.decided_at is None or lodged is None:
            continue
        if before is None or d.decided_at < before:
            latencies.append(d.decided_ts - lodged)
    return latencies


def invalidates(seed: int, mrn: str) -> bool:
    """Whether the demo's trader invalidates `mrn`: seeded, and independent of the order in which
    acceptances are read, like the simulator's own draws."""
    return draw(seed, mrn, "trader-invalidation") < INVALIDATION_SHARE


class Flow:
    """Everything the demo reads, folded into counts and per-declaration facts.

    It also keeps which answers the COP simulator owes: its answers are pure functions of the
    forwards and statuses it reads (see `cop_simulator`), so their eventIds are known in advance,
    and the flow has not settled while one of them is not on the broker yet.
    """

    def __init__(
        self, schemas: SchemaCatalogue, mix: Mix, lodged_keys: Set[str] | None = None
    ) -> None:
        self.schemas = schemas
        self.mix = mix
        self.lodged_keys = lodged_keys  # None: every intake outcome is of this run
        self.intake = Intake()
        self.earlier = 0  # intake outcomes of messages lodged by an earlier run
        self.intake_duplicates = 0  # a second intake outcome of one message breaks spec §11
        self.reused_mrns = 0  # an MRN given to a second declaration: its sequence went back
        self.declarations: dict[str, Declaration] = {}
        self.lodged_ts: dict[str, int] = {}
        self.lodged_at: dict[str, str] = {}  # key → topic/partition/offset, to point at a loss
        self.intake_keys: set[str] = set()  # the lodged keys with an intake outcome
        self.later_dead_letters: Counter[str] = Counter()
        self.owed: set[str] = set()
        self.answered: set[str] = set()

    def without_intake_outcome(self) -> list[str]:
        """Where the lodged messages without an intake outcome are, in lodging order."""
        return [at for key, at in self.lodged_at.items() if key not in self.intake_keys]

    def pending_answers(self) -> int:
        return len(self.owed - self.answered)

    def decided(self) -> int:
        return sum(1 for d in self.declarations.values() if d.outcome is not None)

    def absorb(self, logical: str, message: Received) -> Declaration | None:
        """Fold one message in; return the declaration the decision stage reported for the
        first time, if it did."""
        if logical == LODGED_EVENT:
            self._lodged(message)
            return None
        if message.value is None:
            return None  # a tombstone of the compacted status topic
        if logical.startswith(DEAD_LETTER):
            self._dead_letter(logical, message.value)
            return None
        record = self.schemas.decode(logical, message.value)
        if logical in (ACCEPTED_EVENT, REJECTED_EVENT):
            key = declaration_key(record["declarantEori"], record["lrn"])
            if not self._first_outcome_of_ours(key):
                return None
            if logical == ACCEPTED_EVENT:
                self._accepted(record, key)
            else:
                self.intake.rejected += 1
                self.intake.rules.update({e["code"] for e in record["errors"]})
            return None
        d = self.declarations.get(str(record["mrn"]))
        if d is None:
            return None  # an MRN of an earlier run in this namespace
        if logical == FORWARDED_EVENT:
            d.forwarded = True
            self.owed.update(str(r["eventId"]) for _, r in answer_forward(record, self.mix))
        elif logical == PRESENTED_EVENT:
            d.presented = True
        elif logical == STATUS_EVENT:
            first = d.state is None
            d.state = str(record["state"])
            self.owed.update(str(r["eventId"]) for _, r in answer_status(record, self.mix))
            return d if first else None
        else:
            self._outcome(d, logical, record, message.timestamp)
        return None

    def _lodged(self, message: Received) -> None:
        key = (message.key or b"").decode(errors="replace")
        # The first lodging counts: a resubmitted LRN is rejected as a duplicate.
        self.lodged_ts.setdefault(key, message.timestamp)
        self.lodged_at.setdefault(key, f"{message.topic}/{message.partition}/{message.offset}")

    def _dead_letter(self, logical: str, value: bytes) -> None:
        record = self.schemas.decode(DEAD_LETTER, value)
        reason = str(record["reason"])
        key = (record["key"] or b"").decode(errors="replace")
        if logical == f"{DEAD_LETTER}:intake":
            if self._first_outcome_of_ours(key):
                self.intake.dead_letters[reason] += 1
            return
        # Past intake every input comes from the pipeline, the simulator or the demo's trader:
        # any dead letter there is a fault worth showing.
        source = str(record["sourceTopic"]).rpartition(".")[2]
        self.later_dead_letters[f"{record['stage']}: {reason} ({source})"] += 1
        d = self.declarations.get(key)
        if d is not None and str(record["sourceTopic"]).endswith(".invalidations.requested"):
            d.invalidation_dead_lettered = True

    def _first_outcome_of_ours(self, key: str) -> bool:
        """Whether an intake outcome counts: it is of a message this run lodged (a stage that
        works off a backlog left by an earlier run sends that run's outcomes now), and the
        first one of that message."""
        if self.lodged_keys is not None and key not in self.lodged_keys:
            self.earlier += 1
            return False
        if key in self.intake_keys:
            self.intake_duplicates += 1
            return False
        self.intake_keys.add(key)
        return True

    def _accepted(self, record: Mapping[str, Any], key: str) -> None:
        self.intake.accepted += 1
        if str(record["mrn"]) in self.declarations:
            self.reused_mrns += 1
        declaration = Declaration(
            mrn=str(record["mrn"]),
            key=key,
            accepted_at=record["occurredAt"],
            pre_lodged=record["declaration"]["additionalDeclarationType"] == "D",
        )
        self.declarations[declaration.mrn] = declaration

    def _outcome(
        self, d: Declaration, logical: str, record: Mapping[str, Any], timestamp: int
    ) -> None:
        d.outcomes += 1
        if d.outcome is not None:
            return  # a second outcome: counted above, the first one stands
        d.outcome = OUTCOME_EVENTS[logical]
        d.reason = record.get("reason") if d.outcome == NOT_RELEASED else None
        d.decided_at = record["occurredAt"]
        d.decided_ts = timestamp


def watched_topics(namespace: str) -> dict[str, str]:
    """Topic → what the demo calls it: the logical event, or `dead-letter:<stage>`."""
    logicals = [
        LODGED_EVENT,
        ACCEPTED_EVENT,
        REJECTED_EVENT,
        FORWARDED_EVENT,
        PRESENTED_EVENT,
        STATUS_EVENT,
        *OUTCOME_EVENTS,
    ]
    topics = {topic_name(namespace, logical): logical for logical in logicals}
    topics.update({dead_letter_topic(namespace, s): f"{DEAD_LETTER}:{s}" for s in STAGES})
    return topics


class Feed:
    """One read-committed reader of every watched topic, from the offsets they had before the
    demo lodged anything.

    `kafka_io.read` blocks while nothing arrives; the demo polls itself because it needs the
    silences too: a settled flow is a quiet one.
    """

    def __init__(self, settings: Settings, start: Mapping[tuple[str, int], int]) -> None:
        self._consumer = reader(settings)
        self._consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])

    def poll(self, timeout: float) -> Received | None:
        message = self._consumer.poll(timeout)
        if message is None:
            return None
        error = message.error()
        if error is not None:
            # librdkafka reconnects by itself after a transient error (a broker restarting).
            if error.code() == KafkaError._PARTITION_EOF or not error.fatal():
                return None
            raise RuntimeError(f"reading {message.topic()}: {error.str()}")
        return Received(
            topic=str(message.topic()),
            partition=int(message.partition() or 0),
            offset=int(message.offset() or 0),
            timestamp=int(message.timestamp()[1]),
            key=message.key(),
            value=message.value(),
            headers=[],
        )

    def close(self) -> None:
        self._consumer.close()


class CopSimulator:
    """`cop_simulator.run_simulator` in a background thread; the eventIds of its answers come
    back through a queue once they are on the broker."""

    def __init__(self, settings: Settings, mix: Mix) -> None:
        self._settings = settings
        self._mix = mix
        self._stop = threading.Event()
        self._answers: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="cop-simulator", daemon=True)
        self.error: Exception | None = None

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            run_simulator(
                self._settings,
                self._mix,
                stop=self._stop,
                on_answer=lambda logical, record: self._answers.put(str(record["eventId"])),
            )
        except Exception as exc:  # reported by the demo, which then stops waiting
            self.error = exc

    def answered(self) -> list[str]:
        drained = []
        while True:
            try:
                drained.append(self._answers.get_nowait())
            except queue.Empty:
                return drained

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)


class Watch:
    """Reads the feed into the flow, plays the trader, and tells when waiting can stop."""

    def __init__(
        self,
        settings: Settings,
        flow: Flow,
        feed: Feed,
        simulator: CopSimulator,
        seed: int,
        alive: Callable[[], bool],
    ) -> None:
        self.settings = settings
        self.flow = flow
        self.feed = feed
        self.simulator = simulator
        self.seed = seed
        self.alive = alive  # whether the stages still run: nothing comes once they stopped
        self.on_change: Callable[[], None] = lambda: None  # the progress bars, once shown
        self.topics = watched_topics(settings.namespace)
        self.client: Producer = producer(settings)
        self.invalidations = 0
        self.last_change = time.monotonic()

    def until(self, done: Callable[[], bool], deadline: float, stall: float | None = None) -> bool:
        """Read until `done()` holds (True), or until the deadline passes, nothing has moved for
        `stall` seconds, the stages stop or the simulator fails (False)."""
        while time.monotonic() < deadline and self.simulator.error is None and self.alive():
            if stall is not None and time.monotonic() - self.last_change >= stall:
                return False
            message = self.feed.poll(0.2)
            if message is not None:
                self._absorb(message)
            answered = self.simulator.answered()
            if answered:
                self.flow.answered.update(answered)
                self.last_change = time.monotonic()
            if done():
                return True
        return False

    def _absorb(self, message: Received) -> None:
        logical = self.topics[message.topic]
        reported = self.flow.absorb(logical, message)
        if logical != LODGED_EVENT:  # the demo's own lodgings say nothing of the stages
            self.last_change = time.monotonic()
        if reported is not None:
            self._maybe_invalidate(reported)
        self.on_change()

    def _maybe_invalidate(self, d: Declaration) -> None:
        if not invalidates(self.seed, d.mrn):
            return
        d.invalidation_requested = True
        self.invalidations += 1
        record = {
            "eventId": str(uuid.uuid4()),
            "occurredAt": d.accepted_at + INVALIDATION_DELAY,
            "mrn": d.mrn,
            "reason": INVALIDATION_REASON,
        }
        schemas = self.flow.schemas
        publish_records(self.settings, schemas, INVALIDATION_EVENT, [record], client=self.client)

    def quiet(self) -> bool:
        """Nothing owed by the simulator, and nothing new for `QUIET` seconds."""
        return self.flow.pending_answers() == 0 and time.monotonic() - self.last_change >= QUIET

    def settled(self) -> bool:
        """Every accepted declaration forwarded or already decided (so risk, duties and the
        decision stage have all run), and quiet since."""
        every = all(d.forwarded or d.outcome for d in self.flow.declarations.values())
        return every and self.quiet()


def wait_for_groups(
    settings: Settings,
    groups: Sequence[str],
    deadline: float,
    alive: Callable[[], bool],
    members: Mapping[str, int] | None = None,
) -> bool:
    """Whether every consumer group is stable with a member (with `members[group]` of them, if
    given) before the deadline (and before the workers stop): a worker that has joined its
    group holds its partitions and is about to read them."""
    admin = admin_client(settings)
    wanted = members or {}
    while time.monotonic() < deadline and alive():
        futures = admin.describe_consumer_groups(list(groups), request_timeout=5)
        try:
            described = [future.result() for future in futures.values()]
        except KafkaException:
            described = []  # a group not known yet: not ready
        if described and all(
            g.state == ConsumerGroupState.STABLE
            and len(g.members) >= max(1, wanted.get(g.group_id, 1))
            for g in described
        ):
            return True
        time.sleep(0.5)
    return False


def garbage_messages(rng: random.Random, schemas: SchemaCatalogue, count: int) -> list[bytes]:
    """Three kinds of bad bytes a gateway could let through: noise, cut-off Avro, a schema
    nobody published."""
    lodged = schemas.latest(LODGED_EVENT)
    messages: list[bytes] = []
    for i in range(count):
        kind = i % 3
        if kind == 0:
            messages.append(rng.randbytes(rng.randint(0, 200)))
        elif kind == 1:
            messages.append(lodged.header + rng.randbytes(rng.randint(1, 40)))
        else:
            messages.append(MAGIC + rng.randbytes(8) + rng.randbytes(30))
    return messages


@dataclass(frozen=True)
class GeneratedLoad:
    """What a run lodges: generated declarations (Avro-native) and keyed garbage."""

    records: list[dict[str, Any]]
    bad: list[tuple[bytes, bytes]]

    def keys(self) -> set[str]:
        """The key of every lodged message: what its intake outcome is matched by."""
        keys = {(event_key(LODGED_EVENT, r) or b"").decode() for r in self.records}
        return keys | {key.decode() for key, _ in self.bad}


def generated_load(
    settings: Settings,
    schemas: SchemaCatalogue,
    reference: ReferenceData,
    count: int,
    invalid_share: float,
    garbage: int,
    seed: int,
) -> GeneratedLoad:
    """`count` declarations lodged now, `invalid_share` of them spoilt, and `garbage` bad
    messages; the same seed gives the same load."""
    schema = schemas.latest(LODGED_EVENT).schema
    now = datetime.now(UTC).replace(microsecond=0)
    generated = generate(count, invalid_share, seed, reference, settings.country, start=now)
    records = [from_json(schema, d) for d in generated]
    values = garbage_messages(random.Random(seed), schemas, garbage)
    bad = [(f"garbage-{seed}-{i}".encode(), value) for i, value in enumerate(values)]
    return GeneratedLoad(records, bad)


def start_workers(settings: Settings, log_dir: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"workers-{settings.namespace}.log"
    handle = log_path.open("ab")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "worker",
            "--stage",
            "all",
            "--namespace",
            settings.namespace,
        ],
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    return process, log_path


def stop_workers(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(40)
        except subprocess.TimeoutExpired:
            process.kill()


@dataclass
class Run:
    """The timings and facts of one demo run that the summary shows besides the flow."""

    expected: int
    ready: bool = False
    startup_seconds: float = 0.0
    intake_seconds: float = 0.0
    elapsed: float = 0.0
    jump: datetime | None = None  # event time of the tick
    settled: bool = False
    settled_after_jump: bool = False
    invalidations: int = 0
    simulator_error: Exception | None = None
    workers_exit: int | None = None  # the exit code of stages that stopped before the end


def run_demo(
    settings: Settings,
    count: int,
    invalid_share: float,
    garbage: int,
    seed: int | None,
    timeout: float,
) -> int:
    console = Console()
    seed = seed if seed is not None else int(time.time())
    schemas = catalogue(settings.schemas_dir)
    reference = load_reference(settings.reference_dir)
    created = ensure_topics(settings)
    mix_text = f"{COP_MIX},seed={seed}"
    console.print(
        f"[bold]CCI demo[/] namespace [cyan]{settings.namespace}[/] on {settings.bootstrap}: "
        f"{len(created)} topics created; {count} declarations "
        f"({invalid_share:.0%} with defects) and {garbage} garbage messages, seed {seed}\n"
        f"COP simulator mix {mix_text}; the trader invalidates {INVALIDATION_SHARE:.0%} "
        "of the accepted declarations",
        highlight=False,
    )
    start = end_offsets(settings, list(watched_topics(settings.namespace)))
    load = generated_load(settings, schemas, reference, count, invalid_share, garbage, seed)
    records, bad = load.records, load.bad
    flow = Flow(schemas, parse_mix(mix_text), load.keys())
    run = Run(expected=count + garbage)
    workers, log_path = start_workers(settings, ROOT / ".local" / "logs")
    simulator = CopSimulator(settings, flow.mix)
    try:
        simulator.start()
        console.print(
            f"stages started (pid {workers.pid}), COP simulator running; "
            f"logs in {log_path.relative_to(ROOT)}"
        )
        _observe(console, settings)
        with closing(Feed(settings, start)) as feed:
            watch = Watch(settings, flow, feed, simulator, seed, lambda: workers.poll() is None)
            _play(console, watch, run, records, bad, timeout)
    finally:
        run.workers_exit = workers.poll()  # not None: they stopped before the demo stops them
        simulator.stop()
        stop_workers(workers)
    run.simulator_error = simulator.error
    _summary(console, run, flow, settings)
    return 0 if _accounted(run, flow) else 1


def _observe(console: Console, settings: Settings) -> None:
    """Print where the stages' metrics are and, when Prometheus is installed, scrape them with
    the project's configuration and alert rules; it keeps running after the demo so that the
    run can be browsed (`make prometheus-stop`)."""
    running = topology(settings.fused_assessment)
    ports = {stage: stage_port(settings, stage) for stage in sorted(running)}
    for stage, port in ports.items():
        console.print(f"  metrics of {stage}: http://{settings.web_host}:{port}/metrics")
    if not prometheus_local.available():
        console.print("  Prometheus is not installed here: make prometheus-tools")
        return
    directory = ROOT / ".local" / "prometheus"
    prometheus_local.write_targets(
        directory, settings.namespace, ports.values(), {"namespace": settings.namespace}
    )
    server = prometheus_local.LocalPrometheus(directory)
    try:
        with urllib.request.urlopen(f"{server.url}/-/ready", timeout=2):
            console.print(f"  Prometheus (already running): {server.url}")
            return
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        pass
    try:
        server.start()
    except RuntimeError as exc:
        console.print(f"  Prometheus: {exc}")
        return
    console.print(f"  Prometheus with the project's rules: {server.url} (make prometheus-stop)")


def _play(
    console: Console,
    watch: Watch,
    run: Run,
    records: list[dict[str, Any]],
    bad: list[tuple[bytes, bytes]],
    timeout: float,
) -> None:
    """Lodge, wait for intake, let the decisions settle, jump event time, let them settle again;
    each wait bounded by `timeout` seconds."""
    flow, settings = watch.flow, watch.settings
    running = topology(settings.fused_assessment)
    groups = [group_id(settings.namespace, s) for s in (*running, SIMULATOR_GROUP)]
    began = time.monotonic()
    with console.status("waiting for the stages and the COP simulator to join their groups"):
        run.ready = wait_for_groups(settings, groups, began + timeout, watch.alive)
    run.startup_seconds = time.monotonic() - began
    began = time.monotonic()
    with _progress(console) as progress:
        lodging = progress.add_task("lodging", total=run.expected)
        intake = progress.add_task("intake", total=run.expected)
        decided = progress.add_task("decided", total=0)

        def show() -> None:
            progress.update(intake, completed=flow.intake.total)
            progress.update(decided, total=flow.intake.accepted, completed=flow.decided())

        watch.on_change = show
        _lodge(settings, flow.schemas, records, bad, partial(progress.advance, lodging))
        watch.last_change = time.monotonic()
        intake_done = watch.until(
            lambda: flow.intake.total >= run.expected, time.monotonic() + timeout, INTAKE_STALL
        )
        run.intake_seconds = time.monotonic() - began
        if intake_done:
            run.settled = watch.until(watch.settled, time.monotonic() + timeout, STALL)
            # Every COP deadline is its forward's occurredAt + the timeout, and a forward
            # carries its lodging's occurredAt: one tick past the last lodging expires them all.
            last_lodging = max(r["occurredAt"] for r in records)
            run.jump = last_lodging + settings.cop_response_timeout + TICK_MARGIN
            progress.console.print(
                f"advancing event time to {run.jump.isoformat(timespec='seconds')} "
                "(last lodging + COP response timeout) to expire silent COPs",
                highlight=False,
            )
            publish_records(settings, flow.schemas, "clock.tick", [tick_record(run.jump)])
            watch.last_change = time.monotonic()
            run.settled_after_jump = watch.until(watch.quiet, time.monotonic() + timeout, STALL)
        run.invalidations = watch.invalidations
    run.elapsed = time.monotonic() - began


def _lodge(
    settings: Settings,
    schemas: SchemaCatalogue,
    records: list[dict[str, Any]],
    bad: list[tuple[bytes, bytes]],
    advance: Callable[[int], None],
) -> None:
    client = producer(settings)
    publish_records(settings, schemas, LODGED_EVENT, records, client=client, on_sent=advance)
    lodged = topic_name(settings.namespace, LODGED_EVENT)
    for key, value in bad:
        client.produce(lodged, key=key, value=value)
    client.flush(30)
    advance(len(bad))


def _accounted(run: Run, flow: Flow) -> bool:
    """Every lodged message has an intake outcome, and every accepted declaration is decided
    exactly once or waits for its goods."""
    return (
        flow.intake.total >= run.expected
        and flow.intake_duplicates == 0
        and flow.reused_mrns == 0
        and not unexplained(flow.declarations.values())
        and all(d.outcomes <= 1 for d in flow.declarations.values())
        and run.simulator_error is None
        and run.workers_exit is None
    )


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _summary(console: Console, run: Run, flow: Flow, settings: Settings) -> None:
    table = Table(title="What happened to the lodged messages", show_lines=False)
    table.add_column("outcome")
    table.add_column("count", justify="right")
    _intake_rows(table, flow, run)
    table.add_section()
    _decision_rows(table, flow, run)
    table.add_section()
    _timing_rows(table, flow, run)
    console.print(table)
    _warnings(console, run, flow)
    _hints(console, settings)


def _intake_rows(table: Table, flow: Flow, run: Run) -> None:
    intake = flow.intake
    table.add_row("[green]accepted[/] (MRN allocated, IE428 sent)", str(intake.accepted))
    table.add_row("[yellow]rejected[/] (IE456 sent)", str(intake.rejected))
    for code, n in sorted(intake.rules.items()):
        table.add_row(f"  failing rule {code}", str(n))
    table.add_row("[red]dead letters[/]", str(sum(intake.dead_letters.values())))
    for reason, n in sorted(intake.dead_letters.items()):
        table.add_row(f"  {reason}", str(n))
    table.add_row("[bold]accounted for[/]", f"{intake.total} of {run.expected}")
    if flow.intake_duplicates:
        table.add_row("[red]second outcomes of one message[/]", str(flow.intake_duplicates))
    if flow.reused_mrns:
        table.add_row("[red]MRNs allocated twice[/]", str(flow.reused_mrns))
    if flow.earlier:
        table.add_row("[yellow]outcomes of earlier runs' messages[/]", str(flow.earlier))


def _decision_rows(table: Table, flow: Flow, run: Run) -> None:
    declarations = list(flow.declarations.values())
    counts = outcome_counts(declarations)
    table.add_row(f"[bold]what became of the {len(declarations)} accepted[/]", "")
    table.add_row("[green]released[/] (IE429)", str(counts[RELEASED]))
    # Both reasons of spec §9 are shown even at 0: that no declaration lapses is part of what
    # the demo shows (it never jumps the 30 days).
    refusals = Counter({"CONTROL_NOT_SATISFACTORY": 0, "LAPSED": 0})
    refusals.update(
        {k.partition(":")[2]: n for k, n in counts.items() if k.startswith(f"{NOT_RELEASED}:")}
    )
    table.add_row("[yellow]not released[/] (IE451)", str(refusals.total()))
    for reason, n in sorted(refusals.items()):
        table.add_row(f"  {reason}", str(n))
    table.add_row(
        "[magenta]invalidated[/] (IE410)", f"{counts[INVALIDATED]} of {run.invalidations} asked"
    )
    _invalidation_rows(table, [d for d in declarations if d.invalidation_requested])
    table.add_row("still under control", str(counts[UNDER_CONTROL]))
    waiting = sum(counts[s] for s in WAITING_STATES)
    table.add_row("waiting for presentation or COP", str(waiting))
    goods = sum(1 for d in declarations if awaits_goods(d))
    table.add_row("undecided as type D goods never came", str(goods))
    stuck = len(unexplained(declarations))
    if stuck:
        table.add_row("[red]undecided for no visible reason[/]", f"[red]{stuck}[/]")
    after = sum(1 for d in declarations if d.decided_at and run.jump and d.decided_at >= run.jump)
    table.add_row("decided after the jump (COP timed out)", str(after))
    latencies = decision_latencies(declarations, flow.lodged_ts, run.jump)
    quantiles = [f"{percentile(latencies, p):.0f}" for p in (50, 95, 99)] if latencies else []
    table.add_row(
        "lodged→decided p50/p95/p99, before the jump",
        " / ".join(quantiles) + " ms" if quantiles else "-",
    )


def _invalidation_rows(table: Table, requested: list[Declaration]) -> None:
    lost = sum(1 for d in requested if d.invalidation_dead_lettered)
    if lost:
        table.add_row("  [red]dead-lettered[/]: MRN unknown to decision", str(lost))
    # By spec §9, an invalidation read after the decision is refused with an IE456 R095.
    too_late = sum(
        1
        for d in requested
        if d.outcome not in (None, INVALIDATED) and not d.invalidation_dead_lettered
    )
    if too_late:
        table.add_row("  refused, already decided (IE456 R095)", str(too_late))


def _timing_rows(table: Table, flow: Flow, run: Run) -> None:
    table.add_row("start-up: stages, simulator in their groups", f"{run.startup_seconds:.1f} s")
    table.add_row("intake of every lodged message", f"{run.intake_seconds:.1f} s")
    throughput = flow.intake.total / run.intake_seconds if run.intake_seconds else 0.0
    table.add_row("intake throughput", f"{throughput:.0f} messages/s")
    table.add_row("lodging to settled, both waits included", f"{run.elapsed:.1f} s")


def _warnings(console: Console, run: Run, flow: Flow) -> None:
    if run.workers_exit is not None:
        console.print(
            f"[red]the stages stopped by themselves[/] (exit code {run.workers_exit}):"
            " see the worker logs"
        )
    elif not run.ready:
        console.print("[red]some stages had not joined their group[/]: see the worker logs")
    missing = flow.without_intake_outcome()
    if missing:
        console.print(
            f"[red]{len(missing)} lodged messages have no intake outcome[/] (timeout, or nothing"
            f" for {INTAKE_STALL:.0f} s), e.g. {', '.join(missing[:3])}",
            highlight=False,
        )
    elif not run.settled or not run.settled_after_jump:
        console.print(
            f"[red]the decision flow did not settle[/] (timeout, or nothing for {STALL:.0f} s)"
        )
    if run.simulator_error is not None:
        console.print(f"[red]the COP simulator failed:[/] {run.simulator_error}")
    duplicates = [m for m, d in flow.declarations.items() if d.outcomes > 1]
    if duplicates:
        console.print(f"[red]{len(duplicates)} declarations have more than one outcome[/], e.g.")
        console.print(f"  {', '.join(duplicates[:3])}", highlight=False)
    stuck = unexplained(flow.declarations.values())
    if stuck:
        console.print(f"[red]{len(stuck)} declarations are undecided[/] (latest status), e.g.")
        for mrn in stuck[:3]:
            console.print(f"  {mrn} {flow.declarations[mrn].state or 'no status'}", highlight=False)
    for where, n in sorted(flow.later_dead_letters.items()):
        console.print(f"[red]{n} dead letters[/] after intake, {where}", highlight=False)


def _hints(console: Console, settings: Settings) -> None:
    ns = settings.namespace
    hints = [
        (f"cci tail declaration.rejected -n {ns} --limit 3", "rejections, rules"),
        (f"cci tail trader.notification -n {ns} --limit 3", "IE428 / IE456 / IE460 / IE429"),
        (f"cci tail declaration.status -n {ns} --limit 3", "each declaration's state, history"),
        (f"cci tail dead-letter -n {ns} --limit 3", "bad bytes, kept whole"),
        ("cci generate --count 1 | .venv/bin/cci validate -", "check one offline"),
    ]
    console.print("See more:")
    for command, what in hints:
        console.print(f"  {what}:\n    .venv/bin/{command}", highlight=False, soft_wrap=True)
    console.print("  stop the local Kafka broker:\n    make broker-stop", highlight=False)
