"""`make run`: start the stages on the broker, lodge a realistic load, show what happened."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streams.admin import ensure_topics
from streams.codec import MAGIC, SchemaCatalogue, catalogue
from streams.config import ROOT, Settings
from streams.generator import generate
from streams.jsonform import from_json
from streams.kafka_io import end_offsets, producer, publish_records, read
from streams.reference import load_reference
from streams.stages import BUILDERS
from streams.topics import dead_letter_topic, topic_name


@dataclass
class Outcomes:
    accepted: int = 0
    rejected: int = 0
    rules: Counter[str] = field(default_factory=Counter)
    dead_letters: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.accepted + self.rejected + sum(self.dead_letters.values())


def garbage_messages(rng: random.Random, schemas: SchemaCatalogue, count: int) -> list[bytes]:
    """Three kinds of bad bytes a gateway could let through: noise, cut-off Avro, a schema
    nobody published."""
    lodged = schemas.latest("declaration.lodged")
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


def collect(
    settings: Settings,
    schemas: SchemaCatalogue,
    start: dict[tuple[str, int], int],
    expected: int,
    timeout: float,
    progress: Progress,
) -> Outcomes:
    """Read the outcome topics from `start` until every lodged message is accounted for."""
    accepted = topic_name(settings.namespace, "declaration.accepted")
    rejected = topic_name(settings.namespace, "declaration.rejected")
    outcomes = Outcomes()
    task = progress.add_task("outcomes", total=expected)
    topics = sorted({topic for topic, _ in start})
    deadline = time.monotonic() + timeout
    for message in read(settings, topics, start=start, follow=True, deadline=deadline):
        _logical, record = schemas.decode_any(message.value or b"")
        if message.topic == accepted:
            outcomes.accepted += 1
        elif message.topic == rejected:
            outcomes.rejected += 1
            outcomes.rules.update({e["code"] for e in record["errors"]})
        else:
            outcomes.dead_letters[record["reason"]] += 1
        progress.update(task, completed=outcomes.total)
        if outcomes.total >= expected:
            break
    return outcomes


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
    console.print(
        f"[bold]CCI demo[/] namespace [cyan]{settings.namespace}[/] on {settings.bootstrap}: "
        f"{len(created)} topics created; {count} declarations "
        f"({invalid_share:.0%} with defects) and {garbage} garbage messages, seed {seed}"
    )
    outcome_topics = [
        topic_name(settings.namespace, "declaration.accepted"),
        topic_name(settings.namespace, "declaration.rejected"),
        *(dead_letter_topic(settings.namespace, s) for s in BUILDERS),
    ]
    start = end_offsets(settings, outcome_topics)
    schema = schemas.latest("declaration.lodged").schema
    now = datetime.now(UTC).replace(microsecond=0)
    records = [
        from_json(schema, d)
        for d in generate(count, invalid_share, seed, reference, settings.country, start=now)
    ]
    bad = garbage_messages(random.Random(seed), schemas, garbage)
    workers, log_path = start_workers(settings, ROOT / ".local" / "logs")
    console.print(f"stages started (pid {workers.pid}), logs in {log_path.relative_to(ROOT)}")
    try:
        began = time.monotonic()
        client = producer(settings)
        lodged = topic_name(settings.namespace, "declaration.lodged")
        with _progress(console) as progress:
            task = progress.add_task("lodging", total=count + garbage)
            publish_records(
                settings,
                schemas,
                "declaration.lodged",
                records,
                client=client,
                on_sent=lambda n: progress.advance(task, n),
            )
            for i, value in enumerate(bad):
                client.produce(lodged, key=f"garbage-{seed}-{i}".encode(), value=value)
            client.flush(30)
            progress.advance(task, garbage)
            outcomes = collect(settings, schemas, start, count + garbage, timeout, progress)
        elapsed = time.monotonic() - began
    finally:
        stop_workers(workers)
    _summary(console, outcomes, count + garbage, elapsed, settings)
    return 0 if outcomes.total >= count + garbage else 1


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:>9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


def _summary(
    console: Console, outcomes: Outcomes, expected: int, elapsed: float, settings: Settings
) -> None:
    table = Table(title="What happened to the lodged messages", show_lines=False)
    table.add_column("outcome")
    table.add_column("count", justify="right")
    table.add_row("[green]accepted[/] (MRN allocated, IE428 sent)", str(outcomes.accepted))
    table.add_row("[yellow]rejected[/] (IE456 sent)", str(outcomes.rejected))
    for code, n in sorted(outcomes.rules.items()):
        table.add_row(f"  failing rule {code}", str(n))
    table.add_row("[red]dead letters[/]", str(sum(outcomes.dead_letters.values())))
    for reason, n in sorted(outcomes.dead_letters.items()):
        table.add_row(f"  {reason}", str(n))
    missing = expected - outcomes.total
    table.add_row("[bold]accounted for[/]", f"{outcomes.total} of {expected}")
    table.add_row("elapsed, stages' start-up included", f"{elapsed:.1f} s")
    table.add_row("throughput", f"{outcomes.total / elapsed:.0f} messages/s" if elapsed else "-")
    console.print(table)
    if missing > 0:
        console.print(f"[red]{missing} messages have no outcome yet[/]: see the worker logs")
    hints = [
        (f"cci tail declaration.rejected -n {settings.namespace} --limit 3", "rejections, rules"),
        (f"cci tail trader.notification -n {settings.namespace} --limit 3", "IE428 / IE456"),
        (f"cci tail dead-letter -n {settings.namespace} --limit 3", "bad bytes, kept whole"),
        ("cci generate --count 1 | .venv/bin/cci validate -", "check one offline"),
    ]
    console.print("See more:")
    for command, what in hints:
        console.print(f"  {what}:\n    .venv/bin/{command}", highlight=False, soft_wrap=True)
    console.print("  stop the local Kafka broker:\n    make broker-stop", highlight=False)
