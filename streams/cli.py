"""`cci`: the command line of the clearance pipeline.

Every failure the user can cause (a bad argument, an unreadable file, a broker that does not
answer) ends as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError

from streams.config import Settings

app = typer.Typer(
    name="cci",
    help="Centralised Clearance for Import: run, feed and inspect the clearance pipeline.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
topics_app = typer.Typer(help="Create or delete the topics of a namespace.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
recette_app = typer.Typer(help="Run recette campaigns (spec §12).", no_args_is_help=True)
app.add_typer(recette_app, name="recette")


class CliError(Exception):
    """A user-facing failure: printed as one line, exit `code`."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 2) -> NoReturn:
    raise CliError(message, code)


NamespaceOpt = Annotated[
    str | None,
    typer.Option("--namespace", "-n", help="topic namespace (default: CCI_NAMESPACE or cci)"),
]


def load_settings(namespace: str | None = None) -> Settings:
    try:
        base = Settings()
        return (
            base if namespace is None else Settings(**{**base.model_dump(), "namespace": namespace})
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        fail(f"invalid setting {where}: {first['msg']}")


def _read_text(path: str) -> str:
    try:
        return sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        fail(f"{path}: cannot be read ({getattr(exc, 'strerror', None) or exc})")


@app.command()
def validate(
    file: Annotated[str, typer.Argument(help="declaration in the JSON form of spec §3, or -")],
    namespace: NamespaceOpt = None,
) -> None:
    """Check one declaration offline (exit 0 valid, 1 invalid, 2 not a declaration)."""
    from streams.assessment import InvalidDeclaration

    try:
        _load_declaration(file, namespace)
    except InvalidDeclaration as exc:
        errors = [e.as_dict() for e in exc.errors]
        typer.echo(json.dumps({"valid": False, "errors": errors}, ensure_ascii=False))
        raise typer.Exit(1) from None
    typer.echo(json.dumps({"valid": True, "errors": []}))


@app.command()
def assess(
    file: Annotated[str, typer.Argument(help="declaration in the JSON form of spec §3, or -")],
    namespace: NamespaceOpt = None,
) -> None:
    """Print the risk and duty assessment of one declaration, as the stages would make it."""
    from streams.assessment import InvalidDeclaration
    from streams.assessment import assess as run_assessment
    from streams.duties import AssessmentError

    try:
        record, reference, schemas = _load_declaration(file, namespace)
        result = run_assessment(record, reference, schemas)
    except (InvalidDeclaration, AssessmentError) as exc:
        fail(f"{file}: {exc}")
    typer.echo(json.dumps(result, ensure_ascii=False))


def _load_declaration(file: str, namespace: str | None) -> tuple[dict[str, Any], Any, Any]:
    """The checked Avro-native declaration of `file`; fails with one line when it is not one.
    Raises `InvalidDeclaration` when it breaks rules of spec §4."""
    from streams.assessment import NotADeclaration, load_declaration_json
    from streams.codec import catalogue
    from streams.reference import ReferenceDataError, load_reference

    settings = load_settings(namespace)
    text = _read_text(file)
    try:
        reference = load_reference(settings.reference_dir)
    except ReferenceDataError as exc:
        fail(str(exc))
    schemas = catalogue(settings.schemas_dir)
    try:
        record = load_declaration_json(text, schemas, reference, settings.country)
    except NotADeclaration as exc:
        fail(f"{file}: {exc}")
    return record, reference, schemas


@app.command()
def generate(
    count: Annotated[int, typer.Option("--count", "-c", min=0, help="how many declarations")] = 10,
    invalid_share: Annotated[
        float, typer.Option("--invalid-share", min=0.0, max=1.0, help="share with defects")
    ] = 0.0,
    seed: Annotated[int, typer.Option("--seed", help="same seed, same declarations")] = 1,
    output: Annotated[str, typer.Option("--output", "-o", help="file, or - for stdout")] = "-",
) -> None:
    """Write realistic declarations as JSON lines (reproducible with --seed)."""
    from streams.generator import generate as make
    from streams.reference import load_reference

    settings = load_settings()
    reference = load_reference(settings.reference_dir)
    lines = (
        json.dumps(d, ensure_ascii=False) + "\n"
        for d in make(count, invalid_share, seed, reference, settings.country)
    )
    if output == "-":
        for line in lines:
            sys.stdout.write(line)
        return
    try:
        with open(output, "w", encoding="utf-8") as handle:
            handle.writelines(lines)
    except OSError as exc:
        fail(f"{output}: cannot be written ({exc.strerror})")


def _parse_lines(logical: str, text: str, source: str, settings: Settings) -> list[dict[str, Any]]:
    from streams.codec import catalogue
    from streams.jsonform import JsonFormError, from_json
    from streams.kafka_io import complete

    schema = catalogue(settings.schemas_dir).latest(logical).schema
    records: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(from_json(schema, complete(logical, json.loads(line))))
        except json.JSONDecodeError as exc:
            fail(f"{source}:{number}: not JSON ({exc.msg})")
        except JsonFormError as exc:
            fail(f"{source}:{number}: not a {logical}: {exc}")
        except AttributeError:
            fail(f"{source}:{number}: not a {logical}: expected a JSON object")
    return records


def _known_event(logical: str) -> str:
    from streams.topics import EVENTS

    if logical not in EVENTS:
        fail(f"unknown event {logical!r}; known: {', '.join(sorted(EVENTS))}")
    return logical


@app.command()
def publish(
    logical_name: Annotated[
        str, typer.Argument(help="logical event name, e.g. declaration.lodged")
    ],
    file: Annotated[str, typer.Argument(help="JSON lines file, or - for stdin")] = "-",
    namespace: NamespaceOpt = None,
) -> None:
    """Encode JSON lines to Avro and produce them (clock.tick goes to every partition)."""
    from rich.progress import Progress

    from streams.codec import catalogue
    from streams.kafka_io import publish_records

    logical = _known_event(logical_name)
    settings = load_settings(namespace)
    records = _parse_lines(logical, _read_text(file), file, settings)
    _require_broker(settings)
    with Progress(transient=True, disable=len(records) < 1000) as progress:
        task = progress.add_task(f"publishing {logical}", total=len(records))
        try:
            sent = publish_records(
                settings,
                catalogue(settings.schemas_dir),
                logical,
                records,
                on_sent=lambda n: progress.advance(task, n),
            )
        except LookupError as exc:
            fail(str(exc))
    typer.echo(f"published {sent} {logical} to {settings.namespace}", err=True)


@app.command()
def tail(
    logical_name: Annotated[str, typer.Argument(help="logical event name, or dead-letter")],
    namespace: NamespaceOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep reading new events")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="stop after N events (0: all)")] = 0,
) -> None:
    """Decode a topic, from its beginning, to JSON lines on stdout."""
    from streams.codec import DecodeError, catalogue
    from streams.jsonform import to_json
    from streams.kafka_io import read
    from streams.topics import DEAD_LETTER, STAGES, dead_letter_topic, topic_name

    settings = load_settings(namespace)
    if logical_name == DEAD_LETTER:
        topics = [dead_letter_topic(settings.namespace, s) for s in sorted(STAGES)]
    else:
        topics = [topic_name(settings.namespace, _known_event(logical_name))]
    _require_broker(settings)
    schemas = catalogue(settings.schemas_dir)
    shown = 0
    try:
        for message in read(settings, topics, follow=follow):
            try:
                logical, record = schemas.decode_any(message.value or b"")
                line: Any = to_json(schemas.latest(logical).schema, record)
            except DecodeError as exc:
                line = {"undecodable": exc.reason, "offset": message.offset}
            typer.echo(json.dumps(line, ensure_ascii=False))
            shown += 1
            if limit and shown >= limit:
                break
    except LookupError as exc:
        fail(str(exc))


@app.command()
def worker(
    stage: Annotated[str, typer.Option("--stage", "-s", help="stage name, or all")] = "all",
    namespace: NamespaceOpt = None,
    loglevel: Annotated[str, typer.Option("--loglevel", help="debug, info, warning")] = "info",
) -> None:
    """Run stages until stopped: one process per stage, each its own consumer group."""
    from streams.reference import ReferenceDataError, load_reference
    from streams.stages import BUILDERS
    from streams.topics import topology
    from streams.worker import run_all, run_stage

    settings = load_settings(namespace)
    if loglevel.lower() not in ("debug", "info", "warning", "error"):
        fail(f"--loglevel {loglevel!r}: use debug, info, warning or error")
    if stage != "all" and stage not in BUILDERS:
        fail(f"unknown stage {stage!r}; stages: {', '.join(sorted(BUILDERS))}, all")
    running = topology(settings.fused_assessment)
    if stage != "all" and stage not in running:
        fail(
            f"stage {stage!r} does not run with CCI_FUSED_ASSESSMENT: the decision stage "
            f"assesses declarations; stages: {', '.join(sorted(running))}, all"
        )
    try:
        load_reference(settings.reference_dir)
    except ReferenceDataError as exc:
        fail(str(exc))
    _require_broker(settings)
    if stage == "all":
        raise typer.Exit(run_all(sorted(running), loglevel, settings.namespace))
    from streams.admin import ensure_changelogs

    _broker_call(lambda: ensure_changelogs(settings, stage))
    typer.echo(
        f"cci worker {stage}: namespace {settings.namespace}, broker {settings.bootstrap}, "
        f"http://{settings.web_host}:{settings.web_port}/, "
        f"metrics http://{settings.web_host}:{settings.web_port}/metrics",
        err=True,
    )
    run_stage(stage, settings, loglevel)


@topics_app.command("create")
def topics_create(namespace: NamespaceOpt = None) -> None:
    """Create the namespace's topics that are missing."""
    from streams.admin import ensure_topics

    settings = load_settings(namespace)
    created = _broker_call(lambda: ensure_topics(settings))
    typer.echo(f"{len(created)} topics created in namespace {settings.namespace}", err=True)


@topics_app.command("delete")
def topics_delete(
    namespace: NamespaceOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="confirm the deletion")] = False,
) -> None:
    """Delete every topic of a namespace, Faust's internal topics included."""
    from streams.admin import delete_namespace

    settings = load_settings(namespace)
    if not yes:
        fail(f"this deletes every topic of namespace {settings.namespace}: add --yes")
    deleted = _broker_call(lambda: delete_namespace(settings))
    typer.echo(f"{len(deleted)} topics deleted from namespace {settings.namespace}", err=True)


@app.command()
def clock(
    interval: Annotated[
        str, typer.Option("--interval", help="wall-clock period, e.g. 1s, 500ms")
    ] = "1s",
    count: Annotated[int | None, typer.Option("--count", min=1, help="stop after N ticks")] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Publish one clock.tick to every partition at a fixed interval (spec §8), until stopped."""
    from streams.clock import run_clock

    seconds = _seconds(interval, "--interval")
    settings = load_settings(namespace)
    _require_broker(settings)
    typer.echo(f"cci clock: a tick every {interval} to {settings.namespace}", err=True)
    sent = _broker_call(lambda: run_clock(settings, seconds, count))
    typer.echo(f"{sent} ticks published", err=True)


@app.command("simulate-cop")
def simulate_cop(
    mix: Annotated[
        str,
        typer.Option(
            "--mix",
            help="shares of the COP's answers, e.g. "
            "silence=0.05,documentary=0.05,physical=0.02,not-presented=0.1,b1=0.2,"
            "delay=PT5M,seed=7",
        ),
    ] = "",
    idle_timeout: Annotated[
        float | None, typer.Option("--idle-timeout", min=0.1, help="stop after N idle seconds")
    ] = None,
    namespace: NamespaceOpt = None,
) -> None:
    """Act as the customs office of presentation and its officers: answer forwards with
    presentations and COP risk results, and controls with control results."""
    from streams.cop_simulator import parse_mix, run_simulator

    try:
        parsed = parse_mix(mix)
    except ValueError as exc:
        fail(f"--mix: {exc}")
    settings = load_settings(namespace)
    _require_broker(settings)
    typer.echo(f"cci simulate-cop: answering in {settings.namespace}", err=True)
    counts = _broker_call(lambda: run_simulator(settings, parsed, idle_timeout=idle_timeout))
    typer.echo(json.dumps(dict(sorted(counts.items()))), err=True)


def _seconds(text: str, option: str) -> float:
    units = {"ms": 0.001, "s": 1.0, "m": 60.0}
    for suffix in ("ms", "s", "m"):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            try:
                value = float(number) * units[suffix]
            except ValueError:
                break
            if value > 0:
                return value
            break
    fail(f"{option} {text!r}: use a positive duration such as 1s, 500ms or 2m")


@app.command()
def demo(
    count: Annotated[
        int, typer.Option("--count", "-c", min=1, help="declarations to lodge")
    ] = 1000,
    invalid_share: Annotated[float, typer.Option("--invalid-share", min=0.0, max=1.0)] = 0.1,
    garbage: Annotated[int, typer.Option("--garbage", min=0, help="undecodable messages")] = 10,
    seed: Annotated[int | None, typer.Option("--seed", help="default: a new seed per run")] = None,
    namespace: NamespaceOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", min=1.0, help="seconds to wait")] = 180.0,
) -> None:
    """Start the stages, lodge generated declarations and garbage, and summarise what happened."""
    from streams.demo import run_demo

    settings = load_settings(namespace)
    _require_broker(settings)
    code = run_demo(settings, count, invalid_share, garbage, seed, timeout)
    raise typer.Exit(code)


@recette_app.command("run")
def recette_run(
    directory: Annotated[str, typer.Argument(help="campaign folder: one YAML scenario per file")],
    report_dir: Annotated[
        str | None, typer.Option("--report-dir", help="write junit.xml, report.md, report.html")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", "-n", help="prefix of the scenarios' namespaces")
    ] = None,
    parallel: Annotated[
        int, typer.Option("--parallel", min=1, max=8, help="scenarios run at once")
    ] = 2,
) -> None:
    """Run a campaign on the broker, each scenario in a fresh namespace with its own workers;
    exit 0 when all pass, 1 when any fails, 2 for an invalid campaign."""
    from rich.console import Console

    from streams.recette.model import CampaignError, load_campaign
    from streams.recette.report import ScenarioResult, coverage, write_reports
    from streams.recette.runner import run_campaign

    try:
        scenarios = load_campaign(Path(directory))
    except CampaignError as exc:
        fail(str(exc))
    settings = load_settings()
    prefix = namespace or "rc"
    _provision_broker(settings)
    console = Console(stderr=True)
    console.print(
        f"recette: {len(scenarios)} scenarios from {directory}, {parallel} at a time, "
        f"on {settings.bootstrap}"
    )

    def show(result: ScenarioResult) -> None:
        mark = "[green]PASS[/]" if result.passed else "[red]FAIL[/]"
        line = f"{mark} {result.scenario.id} {result.scenario.title} ({result.duration:.1f} s)"
        if result.failure is not None:
            line += f"\n      step {result.failure.index + 1}: {result.failure.message}"
        console.print(line, highlight=False, soft_wrap=True)

    work = settings.state_dir / "recette"
    results = run_campaign(scenarios, settings, work, parallel, show, prefix)
    passed = sum(r.passed for r in results)
    console.print(f"{passed} passed, {len(results) - passed} failed")
    if report_dir is not None:
        written = write_reports(results, Path(report_dir))
        covered = coverage(results)
        console.print(f"coverage: {covered.summary()}")
        for path in written.values():
            console.print(f"  {path}")
    raise typer.Exit(0 if passed == len(results) else 1)


def _provision_broker(settings: Settings) -> None:
    """The configured broker, or the local one started when none is configured."""
    import os
    import subprocess

    from streams.admin import BrokerUnavailable, wait_for_broker
    from streams.config import ROOT

    try:
        wait_for_broker(settings, timeout=3)
        return
    except BrokerUnavailable:
        if os.environ.get("KAFKA_BOOTSTRAP"):
            fail(f"no Kafka broker answers at {settings.bootstrap} (KAFKA_BOOTSTRAP)")
    started = subprocess.run(
        ["bash", str(ROOT / "deploy" / "local" / "kafka.sh"), "start"], check=False
    )
    if started.returncode != 0:
        fail("could not start the local Kafka broker (deploy/local/kafka.sh start)")
    _require_broker(settings)


def _require_broker(settings: Settings) -> None:
    from streams.admin import wait_for_broker

    _broker_call(lambda: wait_for_broker(settings, timeout=15))


def _broker_call(call: Any) -> Any:
    from confluent_kafka import KafkaException

    from streams.admin import BrokerUnavailable

    try:
        return call()
    except BrokerUnavailable as exc:
        fail(str(exc))
    except KafkaException as exc:
        fail(f"Kafka: {exc.args[0].str() if exc.args else exc}")
    except LookupError as exc:  # a topic that does not exist
        fail(str(exc).strip("'\""))


def main(argv: list[str] | None = None) -> int:
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="cci", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        print("cci: interrupted", file=sys.stderr)
        return 130
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # bare `cci` or `cci topics`: show help
            print(exc.format_message(), file=sys.stderr)
            return 2
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "cci"
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        print(f"{where}: {' '.join(message.split())}", file=sys.stderr)
        return 2
    except CliError as exc:
        print(f"cci: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("cci: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from confluent_kafka import KafkaException

        if not isinstance(exc, KafkaException):
            raise  # a bug, not a user error: keep the traceback for the report
        print(f"cci: Kafka: {exc.args[0].str() if exc.args else exc}", file=sys.stderr)
        return 1
    return result if isinstance(result, int) else 0


def _register_tools() -> None:
    from streams.bench.cli import register as register_bench
    from streams.cli_security import register as register_security
    from streams.cli_tools import register

    register(app)
    register_security(app)
    register_bench(app)


_register_tools()

if __name__ == "__main__":
    # Run the commands of the `streams.cli` module, not of this `__main__` copy of it: the
    # tools import `streams.cli`, and its errors must be the ones `main` catches.
    from streams.cli import main as _main

    sys.exit(_main())
