"""What a benchmark run measured, as plain data, and the judgements made on it (saturation,
ratios to the ceilings): pure, so that the tests check them without a broker or a clock."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from streams.run_report import percentile

PERCENTS = (50, 95, 99)
# Decided/s follows the offered load while it stays above this share of what the earlier steps
# achieved per offered declaration. Not every declaration is decided within its step (silent
# COPs wait for a timeout, pre-lodged goods for their presentation), so the comparison is with
# the share decided at lower rates, not with 100 %.
FOLLOW = 0.85
# A stage whose input backlog at the end of a step is worth more than this many seconds of its
# own throughput is not keeping up. Generous, because a stage's committed offset moves only
# at each transaction commit (every 0.5 s) and a hop takes about a second.
LAG_SECONDS = 5.0
# The load generator itself may fall short of the target rate; below this share the step says
# more about the generator than about the pipeline.
GENERATOR_SHORTFALL = 0.9
SIMULATOR = "cop-simulator"
# Worker processes per stage a run may start: past the cores of the machines it was written
# for, more copies only measure the scheduler.
MAX_WORKERS = 4


def latency_summary(values: Sequence[float]) -> dict[str, float] | None:
    """Nearest-rank p50/p95/p99 (`run_report.percentile`, as `cci demo` and `cci report`),
    None without values."""
    if not values:
        return None
    return {f"p{p}": float(percentile(values, p)) for p in PERCENTS}


@dataclass
class CeilingResult:
    """One hop over the same pre-filled messages: consume, decode, encode, produce."""

    name: str  # client, faust-eos, faust-alo
    label: str
    guarantee: str
    messages: int = 0  # outputs seen
    seconds: float = 0.0  # first to last output, Kafka timestamps
    startup_seconds: float = 0.0  # process start to first output
    cpu_seconds: float = 0.0  # of the hop's process, from its first output seen to its last
    cpu_messages: int = 0  # the outputs seen over those CPU seconds
    error: str | None = None

    @property
    def per_second(self) -> float:
        return (self.messages - 1) / self.seconds if self.seconds > 0 and self.messages > 1 else 0.0

    @property
    def per_cpu_second(self) -> float:
        return self.cpu_messages / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "per_second": round(self.per_second, 1),
            "per_cpu_second": round(self.per_cpu_second, 1),
        }


@dataclass
class StepResult:
    """One step of offered load: what was lodged, what was decided, what it cost."""

    rate: float  # target declarations per second
    seconds: float  # how long the step lodged
    lodged: int = 0
    decided: int = 0  # decisions whose Kafka timestamp falls in the step
    outcomes: dict[str, int] = field(default_factory=dict)  # of those decisions
    latencies_ms: list[float] = field(default_factory=list)  # of the step's own declarations
    cohort_undecided: int = 0  # declarations of the step without a decision at the end
    # Stage (its worker processes summed), simulator, broker, bench → CPU s in the step.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    inputs: dict[str, int] = field(default_factory=dict)  # stage → inputs consumed in the step
    # Stage → the same per worker process: how evenly the group shared its partitions.
    worker_cpu_seconds: dict[str, list[float]] = field(default_factory=dict)
    worker_inputs: dict[str, list[int]] = field(default_factory=dict)
    lag: dict[str, int] = field(default_factory=dict)  # stage → backlog at the end
    saturated: str | None = None

    @property
    def offered(self) -> float:
        return self.lodged / self.seconds if self.seconds > 0 else 0.0

    @property
    def decided_per_second(self) -> float:
        return self.decided / self.seconds if self.seconds > 0 else 0.0

    def stage_rates(self) -> dict[str, float]:
        """Inputs each stage consumed per second."""
        return {s: n / self.seconds for s, n in self.inputs.items()} if self.seconds > 0 else {}

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["latencies_ms"]  # thousands of numbers: the percentiles say it
        return {
            **data,
            "offered_per_second": round(self.offered, 1),
            "decided_per_second": round(self.decided_per_second, 1),
            "latency_ms": latency_summary(self.latencies_ms),
            "latency_samples": len(self.latencies_ms),
            "cpu_share_of_one_core": {
                k: round(v / self.seconds, 3) for k, v in self.cpu_seconds.items()
            }
            if self.seconds > 0
            else {},
            "stage_inputs_per_second": {k: round(v, 1) for k, v in self.stage_rates().items()},
        }


def decided_share(step: StepResult) -> float:
    return step.decided_per_second / step.offered if step.offered > 0 else 0.0


def saturation(
    steps: Sequence[StepResult], follow: float = FOLLOW, lag_seconds: float = LAG_SECONDS
) -> str | None:
    """Why the last step shows saturation, or None while the pipeline keeps up.

    Saturated when decided/s no longer follows the offered load (its share of the offered
    rate fell below `follow` times the best share of the steps before), or when a stage ends the
    step with a backlog of more than `lag_seconds` of its own throughput (the intake's measured
    against the offered rate, the others against what they consumed)."""
    if not steps:
        return None
    last = steps[-1]
    if last.offered < GENERATOR_SHORTFALL * last.rate:
        return (
            f"the load generator offered {last.offered:.0f}/s of the {last.rate:.0f}/s asked: "
            "this machine cannot offer more"
        )
    earlier = [decided_share(s) for s in steps[:-1] if s.offered > 0]
    if earlier:
        best = max(earlier)
        if best > 0 and decided_share(last) < follow * best:
            return (
                f"decided {last.decided_per_second:.0f}/s for {last.offered:.0f}/s offered: "
                f"{decided_share(last):.0%} of the offered rate, against {best:.0%} at lower rates"
            )
    rates = last.stage_rates()
    for stage, backlog in sorted(last.lag.items()):
        throughput = last.offered if stage == "intake" else rates.get(stage, 0.0)
        if backlog > lag_seconds * max(throughput, 1.0):
            return (
                f"{stage} ended the step {backlog} inputs behind, more than {lag_seconds:.0f} s "
                f"of its {throughput:.0f}/s"
            )
    return None


def peak(steps: Sequence[StepResult]) -> StepResult | None:
    """The step that decided the most per second: the pipeline's measured capacity."""
    return max(steps, key=lambda s: s.decided_per_second, default=None)


# Issue 7's latency target: p99 lodging-to-decision within this at half the saturation rate.
P99_TARGET_MS = 1000.0


def latency_at_half_peak(steps: Sequence[StepResult]) -> dict[str, Any] | None:
    """The p99 of the first step offered at least half the peak decided rate (the saturation
    rate as measured): the target's load, read at or above it, never below. None without a
    peak or without such a step with latencies."""
    best = peak(steps)
    if best is None or best.decided_per_second <= 0:
        return None
    half = best.decided_per_second / 2
    step = next((s for s in steps if s.offered >= half and s.latencies_ms), None)
    if step is None:
        return None
    p99 = float(percentile(step.latencies_ms, 99))
    return {
        "peak_decided_per_second": round(best.decided_per_second, 1),
        "half": round(half, 1),
        "rate": step.rate,
        "offered_per_second": round(step.offered, 1),
        "p99_ms": p99,
        "target_ms": P99_TARGET_MS,
        "met": p99 <= P99_TARGET_MS,
    }


def ceiling_ratios(
    steps: Sequence[StepResult], ceiling: CeilingResult | None
) -> dict[str, dict[str, float]]:
    """Each stage's highest input rate over the steps, and that rate as a share of the
    framework ceiling; per CPU second too, which holds better on shared cores."""
    if ceiling is None or ceiling.per_second <= 0:
        return {}
    best: dict[str, float] = {}
    per_cpu: dict[str, float] = {}
    for step in steps:
        for stage, rate in step.stage_rates().items():
            if stage == SIMULATOR:
                continue  # not a Faust stage: the framework ceiling says nothing of it
            if rate > best.get(stage, 0.0):
                best[stage] = rate
                cpu = step.cpu_seconds.get(stage, 0.0)
                per_cpu[stage] = step.inputs[stage] / cpu if cpu > 0 else 0.0
    ratios: dict[str, dict[str, float]] = {}
    for stage, rate in sorted(best.items()):
        ratio = {
            "inputs_per_second": round(rate, 1),
            "of_ceiling": round(rate / ceiling.per_second, 3),
        }
        if ceiling.per_cpu_second > 0 and per_cpu.get(stage):
            ratio["inputs_per_cpu_second"] = round(per_cpu[stage], 1)
            ratio["of_ceiling_per_cpu_second"] = round(per_cpu[stage] / ceiling.per_cpu_second, 3)
        ratios[stage] = ratio
    return ratios


def framework_ceiling(ceilings: Sequence[CeilingResult]) -> CeilingResult | None:
    """The ceiling the stages compare with: Faust with the stages' own guarantee."""
    for name in ("faust-eos", "faust-alo"):
        for ceiling in ceilings:
            if ceiling.name == name and ceiling.per_second > 0:
                return ceiling
    return None


def worker_deltas(
    before: Mapping[str, float],
    after: Mapping[str, float],
    groups: Mapping[str, Sequence[str]],
) -> dict[str, list[float]]:
    """Per group (a stage and the labels of its worker processes), what each process's counter
    grew by between two readings, in the group's order. A group with a process missing from
    either reading is left out: a partial sum would pass for the whole stage's."""
    found: dict[str, list[float]] = {}
    for group, labels in groups.items():
        if labels and all(label in before and label in after for label in labels):
            found[group] = [after[label] - before[label] for label in labels]
    return found


def group_totals(deltas: Mapping[str, Sequence[float]], digits: int = 2) -> dict[str, float]:
    """Each group's processes summed: a stage's CPU or inputs whatever its worker count."""
    return {group: round(sum(values), digits) for group, values in deltas.items()}


def group_lag(committed: Mapping[tuple[str, int], int], ends: Mapping[tuple[str, int], int]) -> int:
    """Messages between a group's committed offsets and the ends of its partitions; a
    partition never committed counts from 0. Transaction markers count as messages."""
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in ends.items())


# `cci bench stages`: each stage alone drains a backlog left by the stages before it.

# How long a stage's inputs counter must stand still, every input available to it handled,
# before its backlog counts as drained. A transaction commits every 0.5 s and a scrape every
# 0.25 s: a pause of 3 s is no longer the stage waiting on either.
DRAIN_QUIET = 3.0
# The share of the framework ceiling (faust-eos) each stage alone should reach.
STAGE_TARGET = 0.6


@dataclass(frozen=True)
class CounterSample:
    """One reading of a worker's inputs counter, with the CPU read at the same moment."""

    at: float  # time.monotonic()
    inputs: int | None  # None: its /metrics did not answer (still starting)
    worker_cpu: float | None = None
    broker_cpu: float | None = None


def increases(samples: Sequence[CounterSample]) -> tuple[int, int] | None:
    """The indexes of the first and the last samples at which the counter had grown since the
    answered sample before (or from 0), None while it has not moved. Unanswered samples are
    skipped rather than read as 0: a scrape that times out is not a counter going back."""
    first: int | None = None
    last = 0
    previous = 0
    for index, sample in enumerate(samples):
        if sample.inputs is None:
            continue
        if sample.inputs > previous:
            if first is None:
                first = index
            last = index
        previous = max(previous, sample.inputs)
    return None if first is None else (first, last)


def drained(samples: Sequence[CounterSample], available: int, quiet: float = DRAIN_QUIET) -> bool:
    """Whether the stage is done: its counter reached `available` and has not moved for
    `quiet` seconds. Both, because a stage still joining its group stands still too, and one
    that has reached the count may yet see duplicates after a rebalance."""
    window = increases(samples)
    answered = [s for s in samples if s.inputs is not None]
    if window is None or not answered:
        return False
    latest = answered[-1]
    return (latest.inputs or 0) >= available and latest.at - samples[window[1]].at >= quiet


def _delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else round(after - before, 3)


@dataclass
class StageDrain:
    """One stage alone on a backlog: its inputs, their pace and what they cost."""

    stage: str
    available: int  # records in its input topics (read committed) when it started
    inputs: int = 0  # its counter at the end: every input handled
    window_inputs: int = 0  # handled from the first increase of the counter to the last
    seconds: float = 0.0  # first increase to last, at the scrapes' resolution
    startup_seconds: float = 0.0  # process start to the first increase
    cpu_seconds: float | None = None  # of the worker over the window
    broker_cpu_seconds: float | None = None  # of the local broker over the window
    error: str | None = None

    @property
    def per_second(self) -> float:
        return self.window_inputs / self.seconds if self.seconds > 0 else 0.0

    @staticmethod
    def _per_input_ms(cpu: float | None, inputs: int) -> float | None:
        return None if cpu is None or inputs <= 0 else cpu * 1000 / inputs

    @property
    def cpu_ms_per_input(self) -> float | None:
        return self._per_input_ms(self.cpu_seconds, self.window_inputs)

    @property
    def broker_cpu_ms_per_input(self) -> float | None:
        return self._per_input_ms(self.broker_cpu_seconds, self.window_inputs)

    def as_dict(self) -> dict[str, Any]:
        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            **asdict(self),
            "seconds": round(self.seconds, 2),
            "startup_seconds": round(self.startup_seconds, 1),
            "per_second": round(self.per_second, 1),
            "cpu_ms_per_input": rounded(self.cpu_ms_per_input, 2),
            "broker_cpu_ms_per_input": rounded(self.broker_cpu_ms_per_input, 2),
            "cores_busy": rounded(
                self.cpu_seconds / self.seconds if self.cpu_seconds and self.seconds else None, 2
            ),
        }


def stage_drain(
    stage: str,
    available: int,
    samples: Sequence[CounterSample],
    started: float,
    finished: bool,
) -> StageDrain:
    """What the samples of one drain say. Inputs, time and CPU are all taken between the same
    two samples (the first and the last increase), so that the process start, the group join
    and the silence that ends the drain count in none of them."""
    result = StageDrain(stage, available)
    answered = [s.inputs for s in samples if s.inputs is not None]
    result.inputs = answered[-1] if answered else 0
    window = increases(samples)
    if window is None:
        result.error = "no input handled"
        return result
    first, last = samples[window[0]], samples[window[1]]
    result.window_inputs = (last.inputs or 0) - (first.inputs or 0)
    result.seconds = last.at - first.at
    result.startup_seconds = first.at - started
    result.cpu_seconds = _delta(first.worker_cpu, last.worker_cpu)
    result.broker_cpu_seconds = _delta(first.broker_cpu, last.broker_cpu)
    if not finished and result.inputs < available:
        result.error = f"{result.inputs} of {available} inputs before the timeout"
    elif result.window_inputs <= 0:
        result.error = "every input came between two scrapes: too few to time, raise --count"
    return result


def stage_capacity(
    drains: Sequence[StageDrain], ceiling: CeilingResult | None, lodged: int
) -> dict[str, dict[str, Any]]:
    """Per stage: its inputs/s as a share of the framework ceiling, and the declarations/s it
    alone could carry: its inputs/s over the inputs one lodged declaration gives it (the
    records available to it per declaration lodged, e.g. about 3 per accepted one for the
    decision stage)."""
    found: dict[str, dict[str, Any]] = {}
    for drain in drains:
        rate = drain.per_second
        per_declaration = drain.available / lodged if lodged > 0 else 0.0
        of_ceiling = (
            rate / ceiling.per_second if ceiling is not None and ceiling.per_second > 0 else None
        )
        row: dict[str, Any] = {
            "inputs_per_second": round(rate, 1),
            "inputs_per_declaration": round(per_declaration, 3),
            "declarations_per_second": round(rate / per_declaration, 1)
            if per_declaration > 0 and rate > 0
            else None,
            "of_ceiling": None if of_ceiling is None else round(of_ceiling, 3),
            "meets_target": None if of_ceiling is None or rate <= 0 else of_ceiling >= STAGE_TARGET,
        }
        cpu_ms = drain.cpu_ms_per_input
        if ceiling is not None and ceiling.per_cpu_second > 0 and cpu_ms:
            # Per CPU second holds better than per second when other processes share the cores.
            row["inputs_per_cpu_second"] = round(1000 / cpu_ms, 1)
            row["of_ceiling_per_cpu_second"] = round(1000 / cpu_ms / ceiling.per_cpu_second, 3)
        found[drain.stage] = row
    return found


def bottleneck(capacity: Mapping[str, Mapping[str, Any]]) -> tuple[str, float] | None:
    """The stage that alone carries the fewest declarations per second, and that rate."""
    rated = [
        (stage, float(row["declarations_per_second"]))
        for stage, row in capacity.items()
        if row.get("declarations_per_second")
    ]
    return min(rated, key=lambda item: item[1], default=None)
