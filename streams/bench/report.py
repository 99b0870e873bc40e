"""The benchmark's outputs: a JSON document (everything measured), a Markdown table of it and a
PNG of decided/s and latency against offered load, with the ceilings as horizontal lines.

The files go to `bench/results/<stem>.{json,md,png}`, the stem being the UTC time of the run
and the commit; `cci bench scaling` adds a comparison of runs with different worker counts
(`scaling-<stem>.{json,md}`) beside the runs' own files. The picture is drawn on matplotlib's
Agg canvas without pyplot, like `cci report`: no display and no global state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streams.bench.machine import describe
from streams.bench.micro import MicroResult
from streams.bench.results import (
    DRAIN_QUIET,
    STAGE_TARGET,
    CeilingResult,
    StageDrain,
    StepResult,
    bottleneck,
    ceiling_ratios,
    framework_ceiling,
    latency_at_half_peak,
    peak,
    stage_capacity,
)
from streams.config import ROOT

RESULTS_DIR = ROOT / "bench" / "results"
LATENCY_DEFINITION = (
    "wall clock, from the lodging (the benchmark hands the message to its producer) to the "
    "receipt, by a read-committed reader, of the first declaration.released, "
    "declaration.not-released or declaration.rejected of the same declaration, so the "
    "commit of the transaction carrying the decision is counted; percentiles over the "
    "declarations lodged in the step (nearest rank)"
)
DECIDED_DEFINITION = (
    "decisions (released, not-released, rejected) whose Kafka timestamp falls within the step, "
    "per second of the step"
)
SATURATION = (
    "saturated_at: the asked rate of the first step where decided/s stopped following the "
    "offered rate or a stage ended far behind (None: not reached before the run stopped); "
    "kept_up_to: the highest asked rate before it"
)
# The processes of a run that are not the stages' own workers.
NOT_STAGES = ("broker", "bench", "cop-simulator")


def stem(machine: Mapping[str, Any], kind: str = "bench") -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    commit = str(machine.get("git_commit") or "nocommit").replace("+", "-")
    return f"{kind}-{stamp}-{commit}"


def bench_report(
    machine: Mapping[str, Any],
    config: Mapping[str, Any],
    ceilings: Sequence[CeilingResult],
    steps: Sequence[StepResult],
    stopped_because: str,
    startup_seconds: float,
) -> dict[str, Any]:
    """The JSON document of a `cci bench` run."""
    best = peak(steps)
    framework = framework_ceiling(ceilings)
    return {
        "kind": "bench",
        "machine": dict(machine),
        "config": dict(config),
        "definitions": {"latency": LATENCY_DEFINITION, "decided_per_second": DECIDED_DEFINITION},
        "ceilings": [c.as_dict() for c in ceilings],
        "steps": [s.as_dict() for s in steps],
        "stopped_because": stopped_because,
        "startup_seconds": round(startup_seconds, 1),
        "peak": None
        if best is None
        else {
            "rate": best.rate,
            "offered_per_second": round(best.offered, 1),
            "decided_per_second": round(best.decided_per_second, 1),
        },
        "latency_at_half_peak": latency_at_half_peak(steps),
        "framework_ceiling": None if framework is None else framework.name,
        "stages_against_framework_ceiling": ceiling_ratios(steps, framework),
    }


STAGES_METHOD = (
    "each stage alone, one worker process, drains a backlog: {lodged} generated declarations "
    "(about 10 % with defects) lodged with no stage running, then the intake, the risk and "
    "the duties stages, and the decision stage, one after the other, each on what the stages "
    "before it wrote. No COP simulator runs: the decision stage reads the acceptances and the "
    "risk and duties assessments only, no COP answer. Inputs: the worker's "
    "cci_stage_inputs_total summed, scraped every 0.25 s; time and CPU from its first "
    "increase to its last (the start-up and the group join excluded), ended by {quiet:g} s "
    "without a change once every available record was handled"
)
CAPACITY_DEFINITION = (
    "declarations/s: the stage's inputs/s divided by the records it had to read per declaration "
    "lodged, i.e. the lodging rate it alone could carry with a core to itself"
)


def stages_report(
    machine: Mapping[str, Any],
    config: Mapping[str, Any],
    ceilings: Sequence[CeilingResult],
    drains: Sequence[StageDrain],
    lodged: int,
    stopped_because: str,
) -> dict[str, Any]:
    """The JSON document of a `cci bench stages` run."""
    framework = framework_ceiling(ceilings)
    capacity = stage_capacity(drains, framework, lodged)
    slowest = bottleneck(capacity)
    return {
        "kind": "stages",
        "machine": dict(machine),
        "config": dict(config),
        "definitions": {
            "method": STAGES_METHOD.format(lodged=lodged, quiet=DRAIN_QUIET),
            "declarations_per_second": CAPACITY_DEFINITION,
        },
        "lodged": lodged,
        "ceilings": [c.as_dict() for c in ceilings],
        "framework_ceiling": None if framework is None else framework.name,
        "target_of_ceiling": STAGE_TARGET,
        "stages": [d.as_dict() for d in drains],
        "capacity": capacity,
        "bottleneck": None
        if slowest is None
        else {"stage": slowest[0], "declarations_per_second": slowest[1]},
        "stopped_because": stopped_because,
    }


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def stages_markdown(report: Mapping[str, Any]) -> str:
    framework = report["framework_ceiling"]
    lines = [
        "# CCI benchmark: each stage alone",
        "",
        f"Machine: {describe(report['machine'])}.",
        f"Method: {report['definitions']['method']}. "
        f"{report['definitions']['declarations_per_second'].capitalize()}.",
        f"Stopped: {report['stopped_because']}.",
        "",
        *_ceiling_lines(report["ceilings"]),
    ]
    lines += [
        "",
        f"## Stages (target: {report['target_of_ceiling']:.0%} of the "
        f"{framework or 'framework'} ceiling)",
        "",
        "| stage | available | inputs | s | inputs/s | of ceiling | inputs per declaration "
        "| declarations/s | ms CPU per input | broker ms CPU per input | cores busy | start-up s "
        "| note |",
        "|---|" + "---:|" * 11 + "---|",
    ]
    capacity = report["capacity"]
    for d in report["stages"]:
        c = capacity.get(d["stage"], {})
        lines.append(
            f"| {d['stage']} | {d['available']} | {d['inputs']} | {d['seconds']:.1f} "
            f"| {d['per_second']:.0f} | {_share(c.get('of_ceiling'))} "
            f"| {_or_dash(c.get('inputs_per_declaration'), '.2f')} "
            f"| {_or_dash(c.get('declarations_per_second'), '.0f')} "
            f"| {_or_dash(d['cpu_ms_per_input'], '.2f')} "
            f"| {_or_dash(d['broker_cpu_ms_per_input'], '.2f')} "
            f"| {_or_dash(d['cores_busy'], '.2f')} | {d['startup_seconds']:.1f} "
            f"| {d['error'] or ''} |"
        )
    slowest = report["bottleneck"]
    if slowest:
        lines += [
            "",
            f"Slowest alone: {slowest['stage']}, {slowest['declarations_per_second']:.0f} "
            "declarations/s. Together the stages share the machine's cores, so the pipeline "
            "carries less than its slowest stage alone.",
        ]
    return "\n".join(lines) + "\n"


def micro_report(
    machine: Mapping[str, Any], results: Sequence[MicroResult], described: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "kind": "micro",
        "machine": dict(machine),
        "set": dict(described),
        "results": [r.as_dict() for r in results],
    }


def workers_per_stage(report: Mapping[str, Any]) -> int:
    """The worker processes per stage of a run; files written before `--workers` had one."""
    return int(report.get("config", {}).get("workers", 1))


def _workers_text(count: int) -> str:
    return f"{count} worker{'s' if count > 1 else ''} per stage"


def _ms(latency: Mapping[str, float] | None, key: str) -> str:
    return "-" if not latency else f"{latency[key]:.0f}"


def _ceiling_lines(ceilings: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [
        "## Ceilings (one hop, the same generated declarations)",
        "",
        "| hop | guarantee | messages | msg/s | msg per CPU s | start-up s | note |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for c in ceilings:
        lines.append(
            f"| {c['name']}: {c['label']} | {c['guarantee']} | {c['messages']} "
            f"| {c['per_second']:.0f} | {c['per_cpu_second']:.0f} "
            f"| {c['startup_seconds']:.1f} | {c['error'] or ''} |"
        )
    return lines


def half_peak_text(half: Mapping[str, Any]) -> str:
    """The latency target's line: p99 at the first step offered half the peak or more."""
    verdict = "met" if half["met"] else "not met"
    return (
        f"Latency at half the peak: the peak decided {half['peak_decided_per_second']:.0f}/s; "
        f"the first step offered at least half of it ({half['half']:.0f}/s) is the "
        f"{half['rate']:g}/s step, p99 {half['p99_ms']:.0f} ms against a target of "
        f"{half['target_ms']:.0f} ms: {verdict}."
    )


def settings_text(config: Mapping[str, Any]) -> str:
    """The settings that trade latency against throughput, as the run had them."""
    if "partitions" not in config:
        return "not recorded"
    idle = config.get("idle_commit") or 0
    return (
        f"tuning {config.get('tuning', 'default')}: "
        f"{config['partitions']} partitions per topic, commit every "
        f"{config['commit_interval']:g} s, "
        + (f"or {idle:g} s after the input runs dry" if idle else "idle commit off")
        + (", risk and duties assessed by the decision stage" if config.get("fused") else "")
        + (
            f", fetches wait up to {config['fetch_max_wait']:g} s for"
            f" {config['fetch_min_bytes']} bytes"
            if config.get("fetch_min_bytes", 1) > 1
            else ""
        )
    )


def bench_markdown(report: Mapping[str, Any]) -> str:
    lines = [
        "# CCI benchmark",
        "",
        f"Machine: {describe(report['machine'])}.",
        f"Settings: {settings_text(report.get('config', {}))}.",
        f"Stopped: {report['stopped_because']}.",
        "",
        *_ceiling_lines(report["ceilings"]),
    ]
    steps = report["steps"]
    processes = sorted({k for s in steps for k in s["cpu_share_of_one_core"]})
    workers = workers_per_stage(report)
    lines += [
        "",
        f"## Steps of offered load ({_workers_text(workers)})",
        "",
        f"Latency: {report['definitions']['latency']}. Decided/s: "
        f"{report['definitions']['decided_per_second']}. CPU: share of one core over the step, "
        "a stage's worker processes summed. Backlog: inputs not committed by each group at the "
        "end of the step (transaction markers included).",
        "",
        "| offered/s (asked) | decided/s | p50 ms | p95 ms | p99 ms | undecided "
        + "".join(f"| CPU {p} " for p in processes)
        + "| backlog | saturated |",
        "|" + "---:|" * (6 + len(processes) + 1) + "---|",
    ]
    for s in steps:
        latency = s["latency_ms"]
        backlog = ", ".join(f"{k} {v}" for k, v in sorted(s["lag"].items()) if v) or "0"
        lines.append(
            f"| {s['offered_per_second']:.0f} ({s['rate']:g}) | {s['decided_per_second']:.0f} "
            f"| {_ms(latency, 'p50')} | {_ms(latency, 'p95')} | {_ms(latency, 'p99')} "
            f"| {s['cohort_undecided']} "
            + "".join(f"| {s['cpu_share_of_one_core'].get(p, 0):.2f} " for p in processes)
            + f"| {backlog} | {s['saturated'] or ''} |"
        )
    if workers > 1 and steps:
        lines += _per_worker_lines(steps)
    half = report.get("latency_at_half_peak")
    if half:
        lines += ["", half_peak_text(half)]
    ratios = report["stages_against_framework_ceiling"]
    if ratios:
        lines += [
            "",
            f"## Stages against the framework ceiling ({report['framework_ceiling']})",
            "",
            "| stage | best inputs/s | share of ceiling | inputs per CPU s | share per CPU s |",
            "|---|---:|---:|---:|---:|",
        ]
        for stage, r in ratios.items():
            lines.append(
                f"| {stage} | {r['inputs_per_second']:.0f} | {r['of_ceiling']:.0%} "
                f"| {r.get('inputs_per_cpu_second', 0):.0f} "
                f"| {r.get('of_ceiling_per_cpu_second', 0):.0%} |"
            )
    return "\n".join(lines) + "\n"


def _per_worker_lines(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """Inputs and CPU of each copy of each stage: whether the group shared its partitions."""
    stages = sorted({k for s in steps for k in s.get("worker_inputs", {})})
    lines = [
        "",
        "### Per worker process",
        "",
        "Inputs handled by each copy of a stage (its own /metrics), and in brackets its share "
        "of one core; a copy with no inputs held no partition.",
        "",
        "| asked/s " + "".join(f"| {stage} " for stage in stages) + "|",
        "|---:" + "|---" * len(stages) + "|",
    ]
    for s in steps:
        cells = []
        for stage in stages:
            inputs = s.get("worker_inputs", {}).get(stage)
            cpu = s.get("worker_cpu_seconds", {}).get(stage)
            if not inputs:
                cells.append("-")
                continue
            shares = [f"{v / s['seconds']:.2f}" for v in cpu] if cpu and s["seconds"] > 0 else []
            cells.append(
                " / ".join(str(n) for n in inputs) + (f" ({' / '.join(shares)})" if shares else "")
            )
        lines.append(f"| {s['rate']:g} " + "".join(f"| {c} " for c in cells) + "|")
    return lines


def scaling_report(
    machine: Mapping[str, Any],
    config: Mapping[str, Any],
    runs: Sequence[tuple[Mapping[str, Any], str]],
) -> dict[str, Any]:
    """The comparison of `cci bench scaling`: per run (a bench document and the stem of its
    files), where it saturated and its peak, and each run's ratios to the first (the fewest
    workers)."""
    rows = [_scaling_row(document, name) for document, name in runs]
    ratios: dict[str, dict[str, float | None]] = {}
    if rows:
        base = rows[0]
        for row in rows[1:]:
            ratios[f"{row['workers']}/{base['workers']}"] = {
                key: _ratio(row[key], base[key])
                for key in ("peak_decided_per_second", "saturated_at", "kept_up_to")
            }
    return {
        "kind": "scaling",
        "machine": dict(machine),
        "config": dict(config),
        "definitions": {"decided_per_second": DECIDED_DEFINITION, "saturation": SATURATION},
        "runs": rows,
        "ratios": ratios,
    }


def _scaling_row(document: Mapping[str, Any], name: str) -> dict[str, Any]:
    steps = document["steps"]
    saturated = next((s for s in steps if s["saturated"]), None)
    kept = [s["rate"] for s in steps if not s["saturated"]]
    best = document.get("peak")
    at_peak = next((s for s in steps if best and s["rate"] == best["rate"]), None)
    return {
        "workers": workers_per_stage(document),
        "file": name,
        "steps": len(steps),
        "saturated_at": None if saturated is None else saturated["rate"],
        "kept_up_to": max(kept) if kept else None,
        "peak_rate": None if best is None else best["rate"],
        "peak_decided_per_second": None if best is None else best["decided_per_second"],
        # The stages' own cores at the peak, so that a ratio below the worker count can be
        # told apart from cores that were all busy already.
        "stages_cores_at_peak": None
        if at_peak is None
        else round(
            sum(v for k, v in at_peak["cpu_share_of_one_core"].items() if k not in NOT_STAGES),
            2,
        ),
        "stopped_because": document["stopped_because"],
        "startup_seconds": document["startup_seconds"],
        "load_average_at_end": document["config"].get("load_average_at_end"),
    }


def _ratio(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else round(value / base, 2)


def _or_dash(value: Any, spec: str = "") -> str:
    return "-" if value is None else format(value, spec)


def scaling_markdown(report: Mapping[str, Any]) -> str:
    config = report["config"]
    lines = [
        "# CCI benchmark: worker processes per stage",
        "",
        f"Machine: {describe(report['machine'])}.",
        f"Runs one after the other in fresh namespaces, the same rates "
        f"({', '.join(f'{r:g}' for r in config['rates'])}/s, {config['step_seconds']:g} s each) "
        f"within one budget of {config['budget_seconds']:g} s; {config['partitions']} partitions "
        "per topic, shared by a stage's workers (one consumer group). Decided/s: "
        f"{report['definitions']['decided_per_second']}. {report['definitions']['saturation']}.",
        "",
        "| workers per stage | saturated at (asked/s) | kept up to (asked/s) | peak decided/s "
        "| at asked/s | stages' cores at peak | load average at end | stopped | files |",
        "|---:|---:|---:|---:|---:|---:|---|---|---|",
    ]
    for r in report["runs"]:
        load = r["load_average_at_end"]
        lines.append(
            f"| {r['workers']} | {_or_dash(r['saturated_at'], 'g')} "
            f"| {_or_dash(r['kept_up_to'], 'g')} | {_or_dash(r['peak_decided_per_second'], '.0f')} "
            f"| {_or_dash(r['peak_rate'], 'g')} | {_or_dash(r['stages_cores_at_peak'], '.2f')} "
            f"| {' '.join(str(x) for x in load) if load else '-'} | {r['stopped_because']} "
            f"| {r['file']} |"
        )
    if report["ratios"]:
        lines += [
            "",
            "| ratio | peak decided/s | saturated at | kept up to |",
            "|---|---:|---:|---:|",
        ]
        for name, ratio in report["ratios"].items():
            lines.append(
                f"| {name} workers | {_or_dash(ratio['peak_decided_per_second'], '.2f')} "
                f"| {_or_dash(ratio['saturated_at'], '.2f')} "
                f"| {_or_dash(ratio['kept_up_to'], '.2f')} |"
            )
    return "\n".join(lines) + "\n"


def micro_markdown(report: Mapping[str, Any]) -> str:
    described = report["set"]
    lines = [
        "# CCI micro-benchmark (one process: rates per core)",
        "",
        f"Machine: {describe(report['machine'])}.",
        f"Set: {described['declarations']} generated declarations ({described['valid']} valid), "
        f"seed {described['seed']}, {described['mean_encoded_bytes']} bytes of Avro on average.",
        "",
        "| case | what | per core /s | µs per op (CPU) | wall /s |",
        "|---|---|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['name']} | {r['what']} | {r['per_core_per_second']:.0f} "
            f"| {r['cpu_micros_per_operation']:.1f} | {r['wall_per_second']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def render(report: Mapping[str, Any], path: Path) -> None:
    """Decided/s (and the offered diagonal) above, latency p50/p95/p99 below, against the
    offered load on a log scale; the ceilings as horizontal lines on the throughput."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    steps = report["steps"]
    figure = Figure(figsize=(10, 8), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    offered = [s["offered_per_second"] for s in steps]
    top.plot(offered, offered, color="#999999", linestyle=":", label="offered")
    top.plot(
        offered,
        [s["decided_per_second"] for s in steps],
        marker="o",
        color="#1f77b4",
        label="decided/s",
    )
    colours = {"client": "#2ca02c", "faust-eos": "#d62728", "faust-alo": "#ff7f0e"}
    for c in report["ceilings"]:
        if c["per_second"] > 0:
            top.axhline(
                c["per_second"],
                color=colours.get(c["name"], "#7f7f7f"),
                linestyle="--",
                label=f"ceiling {c['name']} ({c['guarantee']}): {c['per_second']:.0f} msg/s",
            )
    top.set_ylabel("per second")
    top.set_title(
        f"CCI benchmark, {_workers_text(workers_per_stage(report))} — "
        f"{describe(report['machine'])}",
        fontsize=9,
    )
    top.legend(fontsize=8, loc="upper left")
    for key, colour in (("p50", "#2ca02c"), ("p95", "#ff7f0e"), ("p99", "#d62728")):
        points = [(s["offered_per_second"], s["latency_ms"][key]) for s in steps if s["latency_ms"]]
        if points:
            bottom.plot(*zip(*points, strict=True), marker="o", color=colour, label=key)
    bottom.set_ylabel("lodging → decision, ms")
    bottom.set_xlabel("offered declarations per second")
    bottom.legend(fontsize=8, loc="upper left")
    if offered and min(offered) > 0:
        top.set_xscale("log")
        top.set_yscale("log")
        bottom.set_yscale("log")
    for axes in (top, bottom):
        axes.grid(True, which="both", alpha=0.3)
    figure.savefig(path, format="png")


def write(report: Mapping[str, Any], markdown: str, name: str, directory: Path) -> list[Path]:
    """Write `<name>.json`, `<name>.md` and, for a bench run with steps, `<name>.png`."""
    directory.mkdir(parents=True, exist_ok=True)
    written = [directory / f"{name}.json", directory / f"{name}.md"]
    written[0].write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    written[1].write_text(markdown)
    if report.get("kind") == "bench" and report.get("steps"):
        png = directory / f"{name}.png"
        render(report, png)
        written.append(png)
    return written


def console_tables(report: Mapping[str, Any]) -> list[Any]:
    """The report as rich tables narrow enough for a terminal; the Markdown file has it all."""
    from rich.table import Table

    tables: list[Any] = []
    if report["kind"] == "micro":
        table = Table(title=f"per core — {describe(report['machine'])}", title_justify="left")
        for column in ("case", "per core /s", "µs/op (CPU)"):
            table.add_column(column, justify="left" if column == "case" else "right")
        for r in report["results"]:
            table.add_row(
                r["name"], f"{r['per_core_per_second']:.0f}", f"{r['cpu_micros_per_operation']:.1f}"
            )
        return [table]
    if report["kind"] == "scaling":
        return [_scaling_table(report)]
    if report["kind"] == "stages":
        return _stages_tables(report)
    tables.append(_ceilings_table(report))
    if report["steps"]:
        steps = Table(
            title=f"steps, {_workers_text(workers_per_stage(report))} (CPU: cores busy)",
            title_justify="left",
        )
        columns = ("asked", "offered", "decided/s", "p50 ms", "p95 ms", "p99 ms")
        for column in (*columns, "stages CPU", "broker CPU", "backlog", "sat."):
            steps.add_column(column, justify="right")
        for s in report["steps"]:
            shares = s["cpu_share_of_one_core"]
            stages = sum(v for k, v in shares.items() if k not in ("broker", "bench"))
            latency = s["latency_ms"]
            steps.add_row(
                f"{s['rate']:g}",
                f"{s['offered_per_second']:.0f}",
                f"{s['decided_per_second']:.0f}",
                _ms(latency, "p50"),
                _ms(latency, "p95"),
                _ms(latency, "p99"),
                f"{stages:.2f}",
                f"{shares.get('broker', 0):.2f}" if "broker" in shares else "-",
                str(sum(s["lag"].values())),
                "yes" if s["saturated"] else "",
            )
        tables.append(steps)
    return tables


def _scaling_table(report: Mapping[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"workers per stage — {describe(report['machine'])}", title_justify="left")
    for column in ("workers", "saturated at", "kept up to", "peak decided/s", "stages' cores"):
        table.add_column(column, justify="right")
    for r in report["runs"]:
        table.add_row(
            str(r["workers"]),
            _or_dash(r["saturated_at"], "g"),
            _or_dash(r["kept_up_to"], "g"),
            _or_dash(r["peak_decided_per_second"], ".0f"),
            _or_dash(r["stages_cores_at_peak"], ".2f"),
        )
    for name, ratio in report["ratios"].items():
        table.add_row(
            f"ratio {name}",
            _or_dash(ratio["saturated_at"], ".2f"),
            _or_dash(ratio["kept_up_to"], ".2f"),
            _or_dash(ratio["peak_decided_per_second"], ".2f"),
            "",
        )
    return table


def _stages_tables(report: Mapping[str, Any]) -> list[Any]:
    from rich.table import Table

    # Short headers: ten columns must fit a terminal of 80; the Markdown spells them out.
    stages = Table(
        title=f"each stage alone, {report['lodged']} declarations lodged; % of the "
        f"{report['framework_ceiling'] or 'missing'} ceiling, target "
        f"{report['target_of_ceiling']:.0%}",
        title_justify="left",
        show_edge=False,
    )
    stages.add_column("stage", min_width=8, no_wrap=True)
    for column in ("inputs", "s", "in/s", "% ceil", "in/decl", "decl/s", "CPU ms/in", "brk ms/in"):
        stages.add_column(column, justify="right")
    capacity = report["capacity"]
    for d in report["stages"]:
        c = capacity.get(d["stage"], {})
        stages.add_row(
            d["stage"],
            str(d["inputs"]),
            f"{d['seconds']:.1f}",
            f"{d['per_second']:.0f}",
            _share(c.get("of_ceiling")),
            _or_dash(c.get("inputs_per_declaration"), ".2f"),
            _or_dash(c.get("declarations_per_second"), ".0f"),
            _or_dash(d["cpu_ms_per_input"], ".2f"),
            _or_dash(d["broker_cpu_ms_per_input"], ".2f"),
        )
    tables: list[Any] = [_ceilings_table(report), stages]
    notes = [f"{d['stage']}: {d['error']}" for d in report["stages"] if d["error"]]
    if notes:
        tables.append("\n".join(notes))
    return tables


def _ceilings_table(report: Mapping[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"ceilings — {describe(report['machine'])}", title_justify="left")
    for column in ("hop", "guarantee", "msg/s", "per CPU s"):
        table.add_column(column, justify="right" if "/" in column or "CPU" in column else "left")
    for c in report["ceilings"]:
        table.add_row(
            c["name"], c["guarantee"], f"{c['per_second']:.0f}", f"{c['per_cpu_second']:.0f}"
        )
    return table
