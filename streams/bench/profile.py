"""`cci bench profile`: where one stage's worker spends its time while it drains a backlog.

The stages before it drain the generated declarations as in `cci bench stages`; then the
profiled stage drains with py-spy sampling its worker, from outside the process, so that
nothing in the worker changes. py-spy writes the collapsed stacks (one line per stack with its
sample count, the format flamegraph.pl and speedscope read); `summarise` turns them into the
functions holding the most samples, with and without their callees.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.bench.machine import describe
from streams.bench.results import StageDrain
from streams.bench.steps import StageWorker

# Samples a second: enough for shares to the percent over a drain of tens of seconds.
RATE = 100
# py-spy names a frame "function (file:line)"; the line splits one function into many rows.
_LINE = re.compile(r":\d+\)$")


@dataclass(frozen=True)
class Hotspot:
    function: str
    inclusive: float  # share of samples with the function anywhere on the stack
    own: float  # share of samples with the function at the top of the stack


def py_spy() -> str:
    """The py-spy installed with the project (the dev extra), next to this Python."""
    return str(Path(sys.executable).with_name("py-spy"))


def attach(worker: StageWorker, output: Path, log: Path) -> subprocess.Popen[bytes]:
    """Sample `worker` until it exits; py-spy writes `output` then. --nonblocking: the worker
    is never paused, at the price of an occasional torn stack."""
    with log.open("ab") as handle:
        return subprocess.Popen(
            [
                py_spy(),
                "record",
                "--pid",
                str(worker.process.pid),
                "--rate",
                str(RATE),
                "--format",
                "raw",
                "--output",
                str(output),
                "--nonblocking",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
        )


def summarise(lines: Iterable[str], top: int = 25) -> tuple[int, list[Hotspot]]:
    """The sample count and the `top` functions by inclusive share, from collapsed stacks."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        own[frames[-1]] += samples
        # A recursive function counts once per sample.
        for frame in set(frames):
            inclusive[frame] += samples
    if total == 0:
        return 0, []
    ranked = sorted(inclusive.items(), key=lambda item: (-item[1], item[0]))[:top]
    return total, [Hotspot(f, n / total, own[f] / total) for f, n in ranked]


def markdown(
    stage: str,
    machine: dict[str, Any],
    drain: StageDrain,
    total: int,
    hotspots: list[Hotspot],
    stacks: str,
) -> str:
    """The report: the machine, the drain, and the functions by share of samples."""
    cpu = drain.cpu_ms_per_input
    lines = [
        f"# Profile of the {stage} stage",
        "",
        f"Machine: {describe(machine)}.",
        "",
        f"The worker drained {drain.inputs} inputs at {drain.per_second:.0f}/s, "
        + ("CPU unknown" if cpu is None else f"{cpu:.2f} ms of CPU per input")
        + f", sampled by py-spy {RATE} times a second ({total} samples, wall clock: a "
        "function waiting for the CPU counts as much as one using it). Collapsed stacks: "
        f"`{stacks}` (flamegraph.pl, speedscope).",
        "",
        "| with callees | own | function |",
        "|---:|---:|---|",
    ]
    lines += [f"| {h.inclusive:.1%} | {h.own:.1%} | `{h.function}` |" for h in hotspots]
    return "\n".join(lines) + "\n"
