"""`cci capture`, `cci replay`, `cci diff` and `cci report`: record a namespace's traffic, play
it into another namespace, compare what the two decided, and draw a run as one picture.

The commands are added to the `cci` app by `register(app)`, called from `streams.cli`. This
module imports `streams.cli` only inside the commands, so there is no import cycle whenever
`streams.cli` imports it. Errors follow the command line's rule: one line on stderr, exit 2 for
a wrong argument or input; `diff` exits 1 when it finds differences.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

_REGISTERED = "_cci_capture_registered"

# The same option as `streams.cli.NamespaceOpt`. This module imports `streams.cli` only inside
# the commands, so `streams.cli` may import this module at any point of its own loading.
NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="topic namespace (default: CCI_NAMESPACE or cci)"),
]


def capture(
    output: Annotated[Path, typer.Argument(help="the Avro file to write", metavar="OUT.avro")],
    start: Annotated[
        str,
        typer.Option(
            "--from", help="first instant, ISO 8601 with offset (Kafka timestamps: production time)"
        ),
    ],
    end: Annotated[str, typer.Option("--to", help="end instant, excluded")],
    namespace: NamespaceOpt = None,
    topics: Annotated[
        str | None,
        typer.Option(
            "--topics", help="comma-separated logical names (default: every event of spec §2)"
        ),
    ] = None,
) -> None:
    """Write the records of a time range of a namespace's topics to an Avro file, read
    committed and without joining any consumer group."""
    from rich.progress import Progress

    from streams import capture as cap
    from streams.cli import _broker_call, _require_broker, fail, load_settings

    settings = load_settings(namespace)
    try:
        first = cap.parse_instant(start, "--from")
        last = cap.parse_instant(end, "--to")
        if last <= first:
            fail(f"--to {end!r} must be after --from {start!r}")
        logicals = cap.logical_names(topics)
        handle = cap.open_output(output)  # before reading anything: fail early
    except cap.CaptureError as exc:
        fail(str(exc))
    console = Console(stderr=True)
    try:
        with handle:
            _require_broker(settings)
            partitions = _broker_call(lambda: cap.source_partitions(settings, logicals))
            header = cap.CaptureHeader(
                settings.namespace, first.isoformat(), last.isoformat(), dict(partitions)
            )
            writer = cap.open_writer(handle, header)
            with Progress(console=console, transient=True) as progress:
                task = progress.add_task(f"capturing {settings.namespace}", total=None)
                counts = _broker_call(
                    lambda: cap.capture(
                        settings,
                        logicals,
                        cap.millis(first),
                        cap.millis(last),
                        writer.write,
                        on_total=lambda n: progress.update(task, total=n),
                        on_progress=lambda n: progress.advance(task, n),
                    )
                )
            writer.flush()
    except BaseException as exc:
        if output.is_file():
            output.unlink()  # a partial capture is no capture
        if isinstance(exc, cap.CaptureError):
            fail(str(exc))
        raise
    _print_counts(console, f"captured to {output}", counts)


def replay(
    file: Annotated[Path, typer.Argument(help="a file written by cci capture")],
    into_namespace: Annotated[
        str, typer.Option("--into-namespace", help="the namespace to produce into")
    ],
    topics: Annotated[
        str | None,
        typer.Option(
            "--topics", help="replay only these logical names, comma-separated (default: all)"
        ),
    ] = None,
    restamp: Annotated[
        bool,
        typer.Option(
            "--restamp",
            help="stamp records with the production time instead of their captured timestamp",
        ),
    ] = False,
) -> None:
    """Produce every captured record again into the namespace's topic of the same logical name
    and partition, with its key, headers, value and Kafka timestamp, in order per partition.
    Missing topics are created, with retention.ms=-1 so that old timestamps are kept; existing
    topics whose retention would delete the oldest records are refused unless --restamp."""
    from rich.progress import Progress

    from streams import capture as cap
    from streams.cli import _broker_call, _require_broker, fail, load_settings

    settings = load_settings(into_namespace)
    try:
        wanted = None if topics is None else cap.logical_names(topics)
        with cap.open_input(file) as handle:
            replay_plan = cap.plan(handle, wanted)
    except cap.CaptureError as exc:
        fail(f"{file}: {exc}")
    _require_broker(settings)
    console = Console(stderr=True)
    try:
        created = _broker_call(lambda: cap.prepare_target(settings, replay_plan, restamp))
        if created:
            console.print(f"{len(created)} topics created in {settings.namespace}")
        with cap.open_input(file) as handle, Progress(console=console, transient=True) as bar:
            task = bar.add_task(f"replaying into {settings.namespace}", total=replay_plan.total)
            _, records = cap.read_capture(handle)
            counts = _broker_call(
                lambda: cap.replay(
                    settings, records, restamp, wanted, on_sent=lambda n: bar.advance(task, n)
                )
            )
    except cap.CaptureError as exc:
        fail(str(exc))
    _print_counts(console, f"replayed into {settings.namespace}", counts)


def diff(
    namespace_a: Annotated[str, typer.Argument(help="first namespace", metavar="NS_A")],
    namespace_b: Annotated[str, typer.Argument(help="second namespace", metavar="NS_B")],
    as_json: Annotated[
        bool, typer.Option("--json", help="one JSON object per difference on stdout")
    ] = False,
) -> None:
    """Compare the outcomes of the same declarations (by declarant EORI and LRN) in two
    namespaces: acceptance, control, duties, forward, decision, notifications. Exit 0 when
    they agree, 1 when they differ."""
    from rich.table import Table

    from streams.cli import _broker_call, _require_broker, load_settings
    from streams.diff import compare, read_events, summary

    a, b = load_settings(namespace_a), load_settings(namespace_b)
    _require_broker(a)
    differences = compare(
        _broker_call(lambda: read_events(a)), _broker_call(lambda: read_events(b))
    )
    if as_json:
        for d in differences:
            typer.echo(json.dumps(d.as_dict(), ensure_ascii=False))
    elif differences:
        table = Table("declaration", "aspect", namespace_a, namespace_b)
        for d in differences:
            table.add_row(d.declaration, d.aspect, d.a, d.b)
        Console(width=200).print(table)
    counts = ", ".join(f"{n} {aspect}" for aspect, n in sorted(summary(differences).items()))
    typer.echo(
        f"{len(differences)} differences between {namespace_a} and {namespace_b}"
        + (f" ({counts})" if counts else ""),
        err=True,
    )
    raise typer.Exit(1 if differences else 0)


def report(
    output: Annotated[Path, typer.Argument(help="the PNG image to write", metavar="OUT.png")],
    namespace: NamespaceOpt = None,
    bucket: Annotated[
        str, typer.Option("--bucket", help="throughput bucket: 1s, 500ms, 1m")
    ] = "1s",
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="latency percentile window, e.g. 10s (default: 2 buckets or 1/20 of the run)",
        ),
    ] = None,
) -> None:
    """Draw a run as a PNG: throughput of lodged, accepted, rejected and decided declarations
    above, lodging-to-decision latency p50/p95/p99 below, over the seconds since the first
    lodging (Kafka timestamps, read committed, without joining any consumer group)."""
    from streams import run_report as rr
    from streams.cli import _broker_call, _require_broker, _seconds, fail, load_settings

    settings = load_settings(namespace)
    bucket_s = _seconds(bucket, "--bucket")
    window_s = None if window is None else _seconds(window, "--window")
    try:
        rr.check_output(output)  # before reading anything: fail early
    except rr.ReportError as exc:
        fail(str(exc))
    _require_broker(settings)
    try:
        data: rr.RunData = _broker_call(lambda: rr.collect(settings))
    except rr.ReportError as exc:
        fail(str(exc))
    if not data.lodged_ts:
        fail(f"no declarations lodged in namespace {settings.namespace}: nothing to report")
    title = f"CCI run, namespace {settings.namespace}"
    try:
        rr.render(data, output, title, bucket_s=bucket_s, window_s=window_s)
    except OSError as exc:
        fail(f"{output}: cannot be written ({exc.strerror or exc})")
    decided = len(rr.latencies(data.lodged, data.decided))
    typer.echo(
        f"{len(data.lodged_ts)} lodged, {decided} decided in {settings.namespace}"
        + (f", {data.undecodable} undecodable skipped" if data.undecodable else ""),
        err=True,
    )
    typer.echo(str(output))


def _print_counts(console: Console, title: str, counts: dict[str, int]) -> None:
    from rich.table import Table

    table = Table("event", "records", title=title)
    for logical, n in counts.items():
        if n:
            table.add_row(logical, str(n))
    table.add_row("total", str(sum(counts.values())))
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add `capture`, `replay`, `diff` and `report` to `app` (once, however often it is called)."""
    if getattr(app, _REGISTERED, False):
        return
    app.command()(capture)
    app.command()(replay)
    app.command()(diff)
    app.command()(report)
    setattr(app, _REGISTERED, True)
