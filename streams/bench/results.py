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
