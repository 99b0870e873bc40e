"""`cci report`: one picture of a run, for people who would rather look than read.

What it shows, and why:

- Two stacked panels sharing one time axis, in seconds since the namespace's first lodging:
  the throughput of the flow (lodged, accepted, rejected and decided events per second) above,
  and the lodging-to-decision latency below (p50, p95 and p99 over a rolling window, with every
  decision as a faint dot), so that a slowdown lines up with the load that caused it.
- Every time is a Kafka timestamp, the production time of the message (wall clock), never the
  event time of the record: the picture is about how fast the pipeline ran, and event time is
  moved on purpose by clock ticks. The latency of a declaration is the timestamp of its first
  terminal event (released, not released, invalidated) minus that of its first lodging. A
  decision a timer fired waits for a clock tick; ticks are drawn as dotted lines so that the
  latency they add is seen for what it is.
- Declarations are joined by declarant EORI and LRN (the key of spec §2), terminal events by MRN
  through the namespace's acceptances. Undecodable messages (the garbage demos lodge on purpose)
  are counted and skipped.
- The data is read committed and without joining any consumer group (`kafka_io.read`): a report
  never moves anyone's offsets. The computations are pure functions on plain data, so that they
  are tested without a broker.
- The image is drawn on matplotlib's Agg canvas, without pyplot: no display, no global state,
  and the same bytes for the same data (fixed colours, no timestamps in the PNG).
"""

from __future__ import annotations

import math
import os
import tempfile
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from streams.config import Settings
from streams.topics import declaration_key, topic_name

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LODGED = "declaration.lodged"
ACCEPTED = "declaration.accepted"
REJECTED = "declaration.rejected"
TERMINAL = ("declaration.released", "declaration.not-released", "declaration.invalidated")
CLOCK = "clock.tick"
PERCENTS: tuple[float, ...] = (50, 95, 99)

K = TypeVar("K", bound=Hashable)


class ReportError(ValueError):
    """Something the user can fix: printed as one line by the command line."""


@dataclass
class RunData:
    """What a namespace's topics say about a run, as Kafka timestamps (epoch ms)."""

    lodged: dict[str, int] = field(default_factory=dict)  # EORI/LRN → its first lodging
    lodged_ts: list[int] = field(default_factory=list)  # every decodable lodging
    accepted_ts: list[int] = field(default_factory=list)
    rejected_ts: list[int] = field(default_factory=list)
    decided: dict[str, int] = field(default_factory=dict)  # EORI/LRN → its first outcome
    decided_ts: list[int] = field(default_factory=list)  # every terminal event
    outcomes: Counter[str] = field(default_factory=Counter)  # terminal event → how many
    ticks: list[int] = field(default_factory=list)  # one per clock tick, not per partition
    undecodable: int = 0
    unattributed: int = 0  # terminal events whose MRN no acceptance of the namespace names


def collect(settings: Settings, idle_timeout: float = 5.0) -> RunData:
    """Read the namespace's lodgings, intake outcomes, decisions and clock ticks, committed only.

    Raises `ReportError` when the namespace has no such topics, and what `kafka_io.read` raises
    when the broker fails.
    """
    from streams.codec import DecodeError, catalogue
    from streams.kafka_io import read

    schemas = catalogue(settings.schemas_dir)
    logical_of = {
        topic_name(settings.namespace, lg): lg
        for lg in (LODGED, ACCEPTED, REJECTED, *TERMINAL, CLOCK)
    }
    data = RunData()
    key_of_mrn: dict[str, str] = {}
    terminal: list[tuple[str, int]] = []  # (MRN, timestamp): joined once every acceptance is read
    ticks: dict[str, int] = {}  # eventId → its earliest copy
    try:
        for message in read(settings, list(logical_of), idle_timeout=idle_timeout):
            expected = logical_of[message.topic]
            try:
                logical, record = schemas.decode_any(message.value or b"")
            except DecodeError:
                data.undecodable += 1
                continue
            if logical != expected:
                data.undecodable += 1
                continue
            at = message.timestamp
            if logical == LODGED:
                key = declaration_key(record["declarant"]["eori"], record["lrn"])
                data.lodged[key] = min(at, data.lodged.get(key, at))
                data.lodged_ts.append(at)
            elif logical == ACCEPTED:
                key_of_mrn[str(record["mrn"])] = declaration_key(
                    record["declarantEori"], record["lrn"]
                )
                data.accepted_ts.append(at)
            elif logical == REJECTED:
                data.rejected_ts.append(at)
            elif logical == CLOCK:
                event = str(record["eventId"])
                ticks[event] = min(at, ticks.get(event, at))
            else:
                terminal.append((str(record["mrn"]), at))
                data.decided_ts.append(at)
                data.outcomes[logical] += 1
    except LookupError as exc:
        missing = str(exc).strip("'\"").split(";")[0]  # without the hint to create topics
        raise ReportError(
            f"no declarations lodged in namespace {settings.namespace}: {missing}"
        ) from None
    for mrn, at in terminal:
        owner = key_of_mrn.get(mrn)
        if owner is None:
            data.unattributed += 1
        else:
            data.decided[owner] = min(at, data.decided.get(owner, at))
    data.ticks = sorted(ticks.values())
    return data


def throughput(
    timestamps_ms: Sequence[int],
    bucket_s: float,
    origin_ms: int | None = None,
    end_ms: int | None = None,
) -> tuple[list[float], list[float]]:
    """Events per second in consecutive buckets of `bucket_s` seconds.

    Returns the start of every bucket in seconds since `origin_ms` (default: the first
    timestamp) and its rate. Buckets run from the origin (or the earliest event before it) to the
    last event, or to `end_ms` when later, empty ones included: every series drawn with the same
    origin and end covers the same span.
    """
    if bucket_s <= 0:
        raise ValueError(f"bucket_s must be positive, not {bucket_s}")
    if not timestamps_ms:
        return [], []
    origin = min(timestamps_ms) if origin_ms is None else origin_ms
    bucket_ms = bucket_s * 1000
    counts = Counter(math.floor((t - origin) / bucket_ms) for t in timestamps_ms)
    first = min(0, *counts)
    last = max(counts)
    if end_ms is not None:
        last = max(last, math.floor((end_ms - origin) / bucket_ms))
    xs = [i * bucket_s for i in range(first, last + 1)]
    rates = [counts.get(i, 0) / bucket_s for i in range(first, last + 1)]
    return xs, rates


def latencies(lodged: Mapping[K, int], decided: Mapping[K, int]) -> list[tuple[int, float]]:
    """(decided at, latency in seconds) of every key both lodged and decided, by decision time."""
    return sorted((at, (at - lodged[key]) / 1000) for key, at in decided.items() if key in lodged)


def percentile(values: Sequence[float], percent: float) -> float:
    """The nearest-rank percentile: the smallest value with at least `percent`% of the values at
    or below it. Always one of the values, which suits a latency (no interpolated ms); `cci demo`
    uses it too."""
    if not values:
        raise ValueError("no values")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], not {percent}")
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


@dataclass(frozen=True)
class Percentiles:
    """Rolling percentiles: `values[p][i]` is percentile p of the window centred on `xs[i]`
    (seconds since the origin); NaN where the window holds no point, which draws as a gap."""

    xs: list[float]
    values: dict[float, list[float]]


def rolling_percentiles(
    points: Sequence[tuple[int, float]],
    window_s: float,
    percents: Sequence[float] = PERCENTS,
    origin_ms: int | None = None,
    step_s: float | None = None,
) -> Percentiles:
    """Percentiles of the values of `points` ((ms, value) pairs) over a sliding window.

    The window is centred, not trailing: a report is drawn after the run, and a centred window
    puts a rise of the latency above the load that caused it instead of half a window later.
    It is evaluated every `step_s` seconds (default: a fifth of the window) from the first point,
    and at the last one; times are seconds since `origin_ms` (default: the first point).
    """
    if window_s <= 0:
        raise ValueError(f"window_s must be positive, not {window_s}")
    if not points:
        return Percentiles([], {p: [] for p in percents})
    ordered = sorted(points)
    times = [t for t, _ in ordered]
    origin = times[0] if origin_ms is None else origin_ms
    step_ms = (step_s if step_s is not None else window_s / 5) * 1000
    if step_ms <= 0:
        raise ValueError(f"step_s must be positive, not {step_s}")
    half_ms = window_s * 1000 / 2
    xs: list[float] = []
    values: dict[float, list[float]] = {p: [] for p in percents}
    centres = [
        times[0] + i * step_ms for i in range(math.floor((times[-1] - times[0]) / step_ms) + 1)
    ]
    if centres[-1] < times[-1]:
        centres.append(times[-1])  # so that the line reaches the last point
    for centre in centres:
        lo = bisect_left(times, centre - half_ms)
        hi = bisect_right(times, centre + half_ms)
        window = [v for _, v in ordered[lo:hi]]
        xs.append((centre - origin) / 1000)
        for p in percents:
            values[p].append(percentile(window, p) if window else math.nan)
    return Percentiles(xs, values)


def default_window(duration_s: float, bucket_s: float) -> float:
    """A window wide enough to hold a few decisions, narrow enough to show change over the run."""
    return max(2 * bucket_s, duration_s / 20)


def machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU count and model of this machine, e.g. `8 × Intel(R) Xeon(R) Gold 6230`."""
    import platform

    model = ""
    try:
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = " ".join(value.split())
                break
    except OSError:
        pass
    return f"{os.cpu_count() or '?'} × {model or platform.processor() or 'unknown CPU'}"


def check_output(out: Path) -> None:
    """Refuse, before any reading, a path that is not a writable `.png`."""
    if out.suffix.lower() != ".png":
        raise ReportError(f"{out}: the report is a PNG image, name it *.png")
    if out.is_dir():
        raise ReportError(f"{out}: cannot be written (is a directory)")
    parent = out.parent
    if not parent.is_dir():
        raise ReportError(f"{out}: cannot be written (no directory {parent})")
    try:
        with tempfile.NamedTemporaryFile(dir=parent, prefix=".cci-report-", suffix=".png"):
            pass
    except OSError as exc:
        raise ReportError(f"{out}: cannot be written ({exc.strerror or exc})") from None


def _seconds_label(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _duration_label(seconds: float) -> str:
    return f"{seconds * 1000:g} ms" if seconds < 1 else f"{seconds:g} s"


def caption(data: RunData, lags: Sequence[float], cpu: str) -> str:
    """The caption under the picture: totals, then overall percentiles and the machine (two
    lines, so that it fits the width of the image)."""
    released, not_released, invalidated = (data.outcomes[t] for t in TERMINAL)
    totals = [
        f"lodged {len(data.lodged_ts)}"
        + (f" (+{data.undecodable} undecodable, skipped)" if data.undecodable else ""),
        f"accepted {len(data.accepted_ts)}",
        f"rejected {len(data.rejected_ts)}",
        f"decided {len(data.decided_ts)} (released {released}, not released {not_released},"
        f" invalidated {invalidated})",
    ]
    if data.unattributed:
        totals.append(f"{data.unattributed} decisions of unknown MRNs")
    speed = []
    if lags:
        quantiles = " / ".join(_seconds_label(percentile(lags, p)) for p in PERCENTS)
        speed.append(f"lodging → decision p50 / p95 / p99 {quantiles} over {len(lags)} decisions")
    speed.append(f"machine: {cpu}")
    return " · ".join(totals) + "\n" + " · ".join(speed)


# Fixed colours (matplotlib's tab10), so that the same data gives the same bytes.
_SERIES = (
    ("lodged", "#1f77b4"),
    ("accepted", "#2ca02c"),
    ("rejected", "#d62728"),
    ("decided", "#9467bd"),
)
_PERCENTILE_STYLE = {50: ("#1f77b4", "-"), 95: ("#ff7f0e", "-"), 99: ("#d62728", "--")}
_TICK_COLOUR = "#7f7f7f"


def render(
    data: RunData,
    out: Path,
    title: str,
    bucket_s: float = 1.0,
    window_s: float | None = None,
    cpu: str | None = None,
) -> None:
    """Draw the run to the PNG `out` (removed again if drawing fails half-way)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not data.lodged_ts:
        raise ReportError("no declarations lodged: nothing to draw")
    origin = min(data.lodged_ts)
    everything = [
        *data.lodged_ts,
        *data.accepted_ts,
        *data.rejected_ts,
        *data.decided_ts,
        *data.ticks,
    ]
    end = max(everything)
    duration_s = (end - origin) / 1000
    window = window_s if window_s is not None else default_window(duration_s, bucket_s)
    points = latencies(data.lodged, data.decided)
    lags = [lag for _, lag in points]

    figure = Figure(figsize=(12, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    figure.suptitle(title, fontsize=13)

    series = (data.lodged_ts, data.accepted_ts, data.rejected_ts, data.decided_ts)
    for (name, colour), timestamps in zip(_SERIES, series, strict=True):
        xs, rates = throughput(timestamps, bucket_s, origin, end)
        if xs:
            edges = [*xs, xs[-1] + bucket_s]
            top.stairs(rates, edges, label=f"{name} ({len(timestamps)})", color=colour, lw=1.6)
    top.set_ylabel("events per second")
    top.set_title(f"throughput, per {_duration_label(bucket_s)} bucket", fontsize=10, loc="left")
    top.set_ylim(bottom=0)

    if points:
        bottom.scatter(
            [(t - origin) / 1000 for t, _ in points],
            lags,
            s=6,
            color="#c7c7c7",
            label="one decision",
            zorder=1,
        )
        rolling = rolling_percentiles(points, window, PERCENTS, origin_ms=origin)
        for p in PERCENTS:
            colour, style = _PERCENTILE_STYLE[int(p)]
            bottom.plot(
                rolling.xs,
                rolling.values[p],
                style,
                color=colour,
                lw=1.8,
                label=f"p{p:g}",
                zorder=2,
            )
    else:
        bottom.text(0.5, 0.5, "no decision yet", transform=bottom.transAxes, ha="center")
    bottom.set_ylabel("lodging → decision (s)")
    bottom.set_title(
        f"latency, percentiles over a centred {_duration_label(window)} window",
        fontsize=10,
        loc="left",
    )
    bottom.set_ylim(bottom=0)
    started = datetime.fromtimestamp(origin / 1000, UTC).isoformat(timespec="seconds")
    bottom.set_xlabel(f"seconds since the first lodging ({started.replace('+00:00', 'Z')})")

    for axes in (top, bottom):
        for i, tick in enumerate(data.ticks):
            axes.axvline(
                (tick - origin) / 1000,
                color=_TICK_COLOUR,
                ls=":",
                lw=1.2,
                label="clock tick" if i == 0 else None,
                zorder=0,
            )
        axes.grid(True, color="#e5e5e5", lw=0.8)
        axes.set_axisbelow(True)
        # Outside the plot, so that it never hides data.
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    # A little room on the right, so that a clock tick at the very end stays visible.
    left = min(0.0, *(((t - origin) / 1000) for t in everything))
    top.set_xlim(left=left, right=duration_s + max(bucket_s, duration_s) * 0.02)

    figure.supxlabel(caption(data, lags, cpu if cpu is not None else machine()), fontsize=9)
    _save(figure, out)


def _save(figure: Figure, out: Path) -> None:
    try:
        with out.open("wb") as stream:
            figure.savefig(stream, format="png")
    except BaseException:
        out.unlink(missing_ok=True)  # half an image is no image
        raise
