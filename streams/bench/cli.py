"""`cci bench` (the steps and ceilings, needs the broker), `cci bench ceilings` (the ceilings
alone), `cci bench scaling` (the steps once per worker count, compared), `cci bench stages`
(each stage alone on a backlog, against the ceilings), `cci bench profile` (one stage under
py-spy) and `cci bench micro` (pure functions, no broker). Added to the `cci` app by
`register(app)` from `streams.cli`; errors follow its rule: one line on stderr, exit 2.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streams.bench.results import MAX_WORKERS
from streams.tuning import TUNINGS

if TYPE_CHECKING:
    from streams.bench.profile import Hotspot
    from streams.bench.results import StageDrain
    from streams.bench.steps import StepsRun
    from streams.config import Settings

bench_app = typer.Typer(
    help="Measure the pipeline: steps of offered load and ceilings (make bench), the steps per "
    "worker count (bench scaling), or the pure functions per core (make bench-micro). Results "
    "in bench/results/.",
    invoke_without_command=True,
)

OutputOpt = Annotated[
    Path | None,
    typer.Option("--output-dir", help="where the JSON, Markdown and PNG go (bench/results)"),
]
# The share of the budget the ceilings may take, at most; the steps get the rest.
CEILING_SHARE = 0.3
CEILING_MAX_SECONDS = 240.0

StepSecondsOpt = Annotated[
    float, typer.Option("--step-seconds", min=2.0, help="seconds each rate is offered")
]
RatesOpt = Annotated[
    str, typer.Option("--rates", help="offered declarations per second, increasing")
]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="prefix of the run's namespaces")
]
BudgetOpt = Annotated[
    float, typer.Option("--budget", min=60.0, help="seconds the whole run may take")
]
LodgedOpt = Annotated[
    int, typer.Option("--count", min=10, max=100_000, help="declarations lodged for the stages")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="same seed, same declarations")]
TuningOpt = Annotated[
    str,
    typer.Option(
        "--tuning",
        help=f"settings that trade throughput for latency: {', '.join(TUNINGS)}"
        " (streams/tuning.py)",
    ),
]
# Fine steps up to the target of 1,000 a second, around which the fused topology now saturates
# on the EPYC (the default tuning at 270-430/s, the Xeon at 60-90/s), so that the peak and the
# latency at half of it are read close; then doubling.
DEFAULT_RATES = "20,40,60,80,100,150,200,300,400,500,600,800,900,1000,1100,1200,1600,3200"
WORKERS_HELP = "worker processes per stage, sharing its consumer group and partitions"


def parse_rates(text: str) -> list[float]:
    """`50,100,200` → [50.0, 100.0, 200.0]: positive and increasing."""
    from streams.cli import fail

    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(f"--rates {text!r}: use increasing positive numbers, e.g. 50,100,200")
    if not rates or any(r <= 0 for r in rates) or rates != sorted(set(rates)):
        fail(f"--rates {text!r}: use increasing positive numbers, e.g. 50,100,200")
    return rates


def parse_worker_counts(text: str) -> list[int]:
    """`1,2` → [1, 2]: at least two counts to compare, increasing, each 1 to MAX_WORKERS."""
    from streams.cli import fail

    message = (
        f"--workers {text!r}: use two or more increasing counts from 1 to {MAX_WORKERS}, e.g. 1,2"
    )
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        fail(message)
    if (
        len(counts) < 2
        or counts != sorted(set(counts))
        or not 1 <= counts[0] <= counts[-1] <= MAX_WORKERS
    ):
        fail(message)
    return counts


def use_tuning(name: str) -> None:
    """Put tuning `name` in this process's environment, before any settings are read: the
    workers the run starts inherit it. A bad name is one line and exit 2."""
    from streams.cli import fail
    from streams.tuning import apply_tuning

    try:
        apply_tuning(name)
    except ValueError as exc:
        fail(f"--tuning: {exc}")


def steps_config(
    budget: float,
    step_seconds: float,
    rates: list[float],
    workers: int,
    settings: Settings,
    run: StepsRun,
    began: float,
    tuning: str = "default",
) -> dict[str, Any]:
    """What a stepped run was asked and ran with, for its JSON document."""
    return {
        "tuning": tuning,
        "budget_seconds": budget,
        "step_seconds": step_seconds,
        "rates": rates,
        "workers": workers,
        "partitions": settings.partitions,
        "commit_interval": settings.commit_interval,
        "idle_commit": settings.idle_commit,
        "fused": settings.fused_assessment,
        "fetch_min_bytes": settings.fetch_min_bytes,
        "fetch_max_wait": settings.fetch_max_wait,
        "bootstrap": settings.bootstrap,
        "broker_cpu_measured": run.broker_pid is not None,
        "elapsed_seconds": round(time.monotonic() - began, 1),
        # Others share the cores: a load above the core count at the end says the run was
        # starved, whatever it measured.
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }


def _namespace(prefix: str | None) -> str:
    return f"{prefix or 'bench'}-{uuid.uuid4().hex[:8]}"


def _progress() -> Callable[[str], None]:
    """The progress lines of a run, on stderr so that stdout stays the report."""
    from rich.console import Console

    console = Console(stderr=True)
    return lambda line: console.print(line, highlight=False)


def _show(document: dict[str, Any], written: list[Path]) -> None:
    from rich.console import Console

    from streams.bench.report import console_tables, half_peak_text

    console = Console()
    for table in console_tables(document):
        console.print(table)
    if document.get("latency_at_half_peak"):
        console.print(half_peak_text(document["latency_at_half_peak"]), highlight=False)
    if document.get("stopped_because"):
        console.print(f"stopped: {document['stopped_because']}", highlight=False)
    for path in written:
        console.print(f"  {path}", highlight=False)


@bench_app.callback()
def bench(
    ctx: typer.Context,
    budget: BudgetOpt = 600.0,
    step_seconds: StepSecondsOpt = 20.0,
    rates: RatesOpt = DEFAULT_RATES,
    ceiling_count: Annotated[
        int, typer.Option("--ceiling-count", min=10, help="messages each ceiling hop takes")
    ] = 5000,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=MAX_WORKERS, help=WORKERS_HELP)
    ] = 1,
    namespace: NamespaceOpt = None,
    output_dir: OutputOpt = None,
    tuning: TuningOpt = "default",
) -> None:
    """Offer generated load at increasing rates to the real stages until saturation, and
    measure the client and framework ceilings on the same messages (make bench)."""
    if ctx.invoked_subcommand is not None:
        return
    use_tuning(tuning)

    from streams.bench import report as rp
    from streams.bench.ceilings import run_ceilings
    from streams.bench.machine import machine_info
    from streams.bench.steps import run_steps
    from streams.cli import _require_broker, load_settings

    parsed = parse_rates(rates)
    began = time.monotonic()
    deadline = began + budget
    name = _namespace(namespace)
    ceiling_settings = load_settings(f"{name}-c")
    steps_settings = load_settings(f"{name}-s")
    _require_broker(steps_settings)
    log = _progress()

    machine = machine_info()
    log(
        f"bench on {steps_settings.bootstrap}, budget {budget:.0f} s, {workers} worker(s) per "
        f"stage, namespaces {name}-c/-s"
    )
    ceilings = run_ceilings(
        ceiling_settings,
        ceiling_count,
        time.monotonic() + min(CEILING_SHARE * budget, CEILING_MAX_SECONDS),
        log=log,
    )
    run = run_steps(steps_settings, parsed, step_seconds, deadline, log=log, workers=workers)
    config = {
        **steps_config(budget, step_seconds, parsed, workers, steps_settings, run, began, tuning),
        "ceiling_count": ceiling_count,
    }
    document = rp.bench_report(
        machine, config, ceilings, run.steps, run.stopped_because, run.startup_seconds
    )
    markdown = rp.bench_markdown(document)
    written = rp.write(document, markdown, rp.stem(machine), output_dir or rp.RESULTS_DIR)
    _show(document, written)


@bench_app.command("scaling")
def scaling_command(
    workers: Annotated[
        str,
        typer.Option("--workers", help="worker counts per stage to compare, increasing"),
    ] = "1,2",
    budget: Annotated[
        float,
        typer.Option("--budget", min=60.0, help="seconds the whole comparison may take"),
    ] = 900.0,
    step_seconds: StepSecondsOpt = 20.0,
    rates: RatesOpt = DEFAULT_RATES,
    namespace: NamespaceOpt = None,
    output_dir: OutputOpt = None,
    tuning: TuningOpt = "default",
) -> None:
    """The steps once per worker count (no ceilings), one after the other within the budget,
    and a comparison: where each saturated, its peak decided/s, the ratios to the first."""
    use_tuning(tuning)

    from streams.bench import report as rp
    from streams.bench.machine import machine_info
    from streams.bench.steps import run_steps
    from streams.cli import _require_broker, load_settings

    counts = parse_worker_counts(workers)
    parsed = parse_rates(rates)
    began = time.monotonic()
    deadline = began + budget
    name = _namespace(namespace)
    settings = load_settings(f"{name}-w{counts[0]}")
    _require_broker(settings)
    log = _progress()

    machine = machine_info()
    directory = output_dir or rp.RESULTS_DIR
    log(f"bench scaling on {settings.bootstrap}, budget {budget:.0f} s, workers {counts}")
    runs: list[tuple[dict[str, Any], str]] = []
    written: list[Path] = []
    for position, count in enumerate(counts):
        run_began = time.monotonic()
        # An equal share of what is left: time a run did not use (it saturated early) goes to
        # the runs after it.
        share = (deadline - run_began) / (len(counts) - position)
        run_settings = load_settings(f"{name}-w{count}")
        run = run_steps(run_settings, parsed, step_seconds, run_began + share, log, workers=count)
        config = steps_config(
            share, step_seconds, parsed, count, run_settings, run, run_began, tuning
        )
        document = rp.bench_report(
            machine, config, [], run.steps, run.stopped_because, run.startup_seconds
        )
        run_stem = rp.stem(machine, f"bench-w{count}")
        written += rp.write(document, rp.bench_markdown(document), run_stem, directory)
        runs.append((document, run_stem))
    config = {
        "budget_seconds": budget,
        "step_seconds": step_seconds,
        "rates": parsed,
        "workers": counts,
        "tuning": tuning,
        "partitions": settings.partitions,
        "bootstrap": settings.bootstrap,
        "elapsed_seconds": round(time.monotonic() - began, 1),
    }
    comparison = rp.scaling_report(machine, config, runs)
    written += rp.write(
        comparison, rp.scaling_markdown(comparison), rp.stem(machine, "scaling"), directory
    )
    _show(comparison, written)


@bench_app.command("ceilings")
def ceilings_command(
    count: Annotated[int, typer.Option("--count", min=10, help="messages each hop takes")] = 5000,
    budget: Annotated[float, typer.Option("--budget", min=10.0, help="seconds at most")] = 180.0,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="prefix of the run's namespace")
    ] = None,
    output_dir: OutputOpt = None,
) -> None:
    """Only the ceilings: the client and Faust one-hop rates on the same messages."""

    from streams.bench import report as rp
    from streams.bench.ceilings import run_ceilings
    from streams.bench.machine import machine_info
    from streams.cli import _require_broker, load_settings

    settings = load_settings(_namespace(namespace))
    _require_broker(settings)
    machine = machine_info()
    results = run_ceilings(settings, count, time.monotonic() + budget, log=_progress())
    config = {"ceiling_count": count, "budget_seconds": budget, "bootstrap": settings.bootstrap}
    document = rp.bench_report(machine, config, results, [], "ceilings only", 0.0)
    markdown = rp.bench_markdown(document)
    written = rp.write(
        document, markdown, rp.stem(machine, "ceilings"), output_dir or rp.RESULTS_DIR
    )
    _show(document, written)


# The ceilings `cci bench stages` compares with: the stages' own framework and guarantee, and
# the plain client for what the framework itself costs.
STAGE_CEILINGS = ("client", "faust-eos")
# Declarations, and messages per ceiling hop, of `cci bench stages`: a drain is timed by a
# counter read every 0.25 s, so it should last several seconds. At 3,000 the fastest stages
# drained in under a second on a fast machine, each figure then good to a third.
STAGES_COUNT = 10_000


@bench_app.command("stages")
def stages_command(
    count: LodgedOpt = STAGES_COUNT,
    budget: BudgetOpt = 300.0,
    ceiling_count: Annotated[
        int, typer.Option("--ceiling-count", min=10, help="messages each ceiling hop takes")
    ] = STAGES_COUNT,
    seed: SeedOpt = 11,
    namespace: NamespaceOpt = None,
    output_dir: OutputOpt = None,
) -> None:
    """Each stage alone, one worker, draining the backlog the stages before it left: its
    inputs/s, CPU per input, share of the Faust ceiling and the declarations/s it could carry."""

    from streams.bench import report as rp
    from streams.bench.ceilings import run_ceilings
    from streams.bench.drain import run_stages
    from streams.bench.machine import machine_info
    from streams.cli import _require_broker, load_settings

    began = time.monotonic()
    deadline = began + budget
    name = _namespace(namespace)
    ceiling_settings = load_settings(f"{name}-c")
    stage_settings = load_settings(f"{name}-s")
    _require_broker(stage_settings)
    log = _progress()

    machine = machine_info()
    log(
        f"bench stages on {stage_settings.bootstrap}, budget {budget:.0f} s, namespaces {name}-c/-s"
    )
    ceilings = run_ceilings(
        ceiling_settings,
        ceiling_count,
        began + min(CEILING_SHARE * budget, CEILING_MAX_SECONDS),
        variants=STAGE_CEILINGS,
        log=log,
    )
    run = run_stages(stage_settings, count, deadline, seed, log=log)
    config = {
        "count": count,
        "seed": seed,
        "ceiling_count": ceiling_count,
        "budget_seconds": budget,
        "partitions": stage_settings.partitions,
        "commit_interval": stage_settings.commit_interval,
        "idle_commit": stage_settings.idle_commit,
        "fused": stage_settings.fused_assessment,
        "fetch_min_bytes": stage_settings.fetch_min_bytes,
        "fetch_max_wait": stage_settings.fetch_max_wait,
        "bootstrap": stage_settings.bootstrap,
        "broker_cpu_measured": run.broker_pid is not None,
        "elapsed_seconds": round(time.monotonic() - began, 1),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    document = rp.stages_report(
        machine, config, ceilings, run.drains, run.lodged, run.stopped_because
    )
    written = rp.write(
        document,
        rp.stages_markdown(document),
        rp.stem(machine, "stages"),
        output_dir or rp.RESULTS_DIR,
    )
    _show(document, written)


@bench_app.command("profile")
def profile_command(
    stage: Annotated[
        str, typer.Option("--stage", help="the stage to profile: intake, risk, duties, decision")
    ] = "intake",
    count: LodgedOpt = 3000,
    budget: BudgetOpt = 300.0,
    top: Annotated[int, typer.Option("--top", min=1, max=500, help="functions listed")] = 30,
    seed: SeedOpt = 11,
    namespace: NamespaceOpt = None,
    output_dir: OutputOpt = None,
) -> None:
    """One stage's worker sampled by py-spy while it drains the backlog the stages before it
    left (make profile STAGE=...): the functions holding its time, and the collapsed stacks
    for a flame graph, in bench/results/."""
    from streams.bench import profile as pf
    from streams.bench import report as rp
    from streams.bench.drain import ORDER, run_stages
    from streams.bench.machine import machine_info
    from streams.bench.steps import StageWorker
    from streams.cli import _require_broker, fail, load_settings

    if stage not in ORDER:
        fail(f"--stage {stage!r}: choose one of {', '.join(ORDER)}")
    if not Path(pf.py_spy()).exists():
        fail(f"{pf.py_spy()} is missing: run make setup (py-spy comes with the dev extra)")
    settings = load_settings(f"{_namespace(namespace)}-p")
    _require_broker(settings)
    log = _progress()
    machine = machine_info()
    directory = output_dir or rp.RESULTS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    name = rp.stem(machine, f"profile-{stage}")
    stacks = directory / f"{name}.txt"
    sampler: list[Any] = []

    def watch(worker: StageWorker) -> None:
        log(f"profile: py-spy sampling the {stage} worker (pid {worker.process.pid})")
        sampler.append(pf.attach(worker, stacks, directory / f"{name}.py-spy.log"))

    log(f"profile {stage} on {settings.bootstrap}, {count} declarations, budget {budget:.0f} s")
    run = run_stages(
        settings, count, time.monotonic() + budget, seed, log=log, last=stage, watch=watch
    )
    if not sampler:
        fail(f"the {stage} stage was not reached: {run.stopped_because}", code=1)
    try:
        sampler[0].wait(timeout=60)  # py-spy writes its output once the worker has exited
    except subprocess.TimeoutExpired:
        sampler[0].kill()
    if not stacks.exists():
        fail(f"py-spy wrote no samples, see {directory / f'{name}.py-spy.log'}", code=1)
    total, hotspots = pf.summarise(stacks.read_text().splitlines(), top)
    drain = run.drains[-1]
    markdown = pf.markdown(stage, machine, drain, total, hotspots, stacks.name)
    (directory / f"{name}.md").write_text(markdown)
    _show_profile(stage, drain, total, hotspots)
    typer.echo(f"  {stacks}\n  {directory / f'{name}.md'}")


def _show_profile(stage: str, drain: StageDrain, total: int, hotspots: list[Hotspot]) -> None:
    from rich.console import Console
    from rich.table import Table

    cpu = drain.cpu_ms_per_input
    table = Table(
        title=f"{stage}: {drain.inputs} inputs, {drain.per_second:.0f}/s, "
        + ("-" if cpu is None else f"{cpu:.2f} ms CPU")
        + f" per input; {total} samples"
    )
    table.add_column("with callees", justify="right")
    table.add_column("own", justify="right")
    table.add_column("function")
    for spot in hotspots:
        table.add_row(f"{spot.inclusive:.1%}", f"{spot.own:.1%}", spot.function)
    Console().print(table)


@bench_app.command("micro")
def micro_command(
    count: Annotated[
        int, typer.Option("--count", min=10, help="generated declarations in the set")
    ] = 1000,
    seconds: Annotated[
        float, typer.Option("--seconds", min=0.1, help="CPU seconds per case, at least")
    ] = 2.0,
    seed: Annotated[int, typer.Option("--seed", help="same seed, same set")] = 7,
    output_dir: OutputOpt = None,
) -> None:
    """Declarations per second per core of validation, MRN allocation, risk, duties, and Avro
    encode/decode per message, as pure functions in one process (make bench-micro)."""
    from streams.bench import report as rp
    from streams.bench.machine import machine_info
    from streams.bench.micro import run_micro
    from streams.cli import load_settings

    settings = load_settings()
    machine = machine_info()
    results, described = run_micro(settings, count, seconds, seed)
    document = rp.micro_report(machine, results, described)
    markdown = rp.micro_markdown(document)
    written = rp.write(document, markdown, rp.stem(machine, "micro"), output_dir or rp.RESULTS_DIR)
    _show(document, written)


def register(app: typer.Typer) -> None:
    """Add `bench` to `app`, once however often it is called."""
    if any(group.name == "bench" for group in app.registered_groups):
        return
    app.add_typer(bench_app, name="bench")
