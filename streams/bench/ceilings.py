"""The ceilings: how many messages per second one hop can take on this machine, with the plain
client and with Faust, on the same messages as the pipeline (generated declarations, Avro
as the stages encode them, keyed and partitioned as lodged).

How: the input topic is filled first, then each hop (`streams.bench.hop`) starts in its own
process with its own consumer group and output topic and works off the backlog from the
start. The rate is taken from the Kafka timestamps (production time) of its outputs, first to
last, read committed: the process start and the group join do not count, and every variant is
measured the same way from outside. The CPU of the hop's process is read while its outputs
arrive. Everything lives in its own namespace, deleted at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

from streams.admin import delete_namespace, ensure_topics
from streams.bench import procstat
from streams.bench.hop import LODGED, HopConfig
from streams.bench.results import CeilingResult
from streams.codec import SchemaCatalogue, catalogue
from streams.config import ROOT, Settings
from streams.demo import Feed, generated_load
from streams.kafka_io import produce, producer
from streams.ports import free_port
from streams.reference import load_reference
from streams.topics import event_key, group_id, topic_name

LABELS = {
    "client": ("confluent-kafka loop, consume → decode → encode → produce", "at-least-once"),
    "faust-eos": ("Faust agent with the stages' app and processing loop", "exactly-once"),
    "faust-alo": ("bare Faust agent, same broker settings", "at-least-once"),
}
DEFAULT_VARIANTS = ("client", "faust-eos", "faust-alo")
SEED = 11
INVALID_SHARE = 0.1
Log = Callable[[str], None]


def encoded_declarations(
    settings: Settings, schemas: SchemaCatalogue, count: int, seed: int = SEED
) -> list[tuple[bytes, bytes]]:
    """(key, value) of `count` generated declarations, as `cci demo` lodges them."""
    reference = load_reference(settings.reference_dir)
    load = generated_load(settings, schemas, reference, count, INVALID_SHARE, 0, seed)
    return [(event_key(LODGED, r) or b"", schemas.encode(LODGED, r)) for r in load.records]


def prefill(settings: Settings, topic: str, messages: Sequence[tuple[bytes, bytes]]) -> None:
    client = producer(settings)
    for key, value in messages:
        produce(client, topic, key=key, value=value)
    if client.flush(60):
        raise RuntimeError(f"could not fill {topic}: messages left undelivered")


def measure_hop(
    settings: Settings,
    variant: str,
    config: HopConfig,
    expected: int,
    deadline: float,
    log_dir: Path,
) -> CeilingResult:
    """Start the hop, count its outputs until `expected` or the deadline, stop it."""
    label, guarantee = LABELS[variant]
    result = CeilingResult(variant, label, guarantee)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"hop-{variant}.log"
    began = time.monotonic()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streams.bench.hop", variant, config.to_json()],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    first_ts = last_ts = None
    cpu_first = 0.0
    try:
        start = {(config.output_topic, p): 0 for p in range(settings.partitions)}
        with closing(Feed(settings, start)) as feed:
            while result.messages < expected and time.monotonic() < deadline:
                if process.poll() is not None:
                    result.error = f"the hop stopped (exit {process.returncode}), see {log_path}"
                    break
                message = feed.poll(0.2)
                if message is None:
                    continue
                if first_ts is None:
                    first_ts = message.timestamp
                    result.startup_seconds = time.monotonic() - began
                    cpu_first = procstat.cpu_seconds(process.pid) or 0.0
                    result.cpu_messages = 0
                first_ts = min(first_ts, message.timestamp)
                last_ts = max(last_ts or message.timestamp, message.timestamp)
                result.messages += 1
                result.cpu_messages += 1
            result.cpu_seconds = (procstat.cpu_seconds(process.pid) or cpu_first) - cpu_first
    finally:
        stop(process)
    if first_ts is not None and last_ts is not None:
        result.seconds = (last_ts - first_ts) / 1000
    if result.messages < expected and result.error is None:
        result.error = f"{result.messages} of {expected} outputs before the deadline"
    return result


def stop(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run_ceilings(
    settings: Settings,
    count: int,
    deadline: float,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    log: Log = print,
    log_dir: Path = ROOT / ".local" / "bench" / "logs",
) -> list[CeilingResult]:
    """Fill the namespace's lodged topic with `count` declarations and time each hop on them;
    the namespace is deleted after, whatever happens. Each hop gets an even share of the time
    left."""
    schemas = catalogue(settings.schemas_dir)
    source = topic_name(settings.namespace, LODGED)
    outputs = {v: f"{settings.namespace}.ceiling.{v}" for v in variants}
    results: list[CeilingResult] = []
    try:
        ensure_topics(
            settings,
            only={
                source: False,
                **{o: False for o in outputs.values()},
                **{f"{o}.dead-letters": False for o in outputs.values()},
            },
        )
        log(f"ceilings: generating and lodging {count} declarations into {source}")
        prefill(settings, source, encoded_declarations(settings, schemas, count))
        for index, variant in enumerate(variants):
            share = (deadline - time.monotonic()) / (len(variants) - index)
            config = HopConfig(
                namespace=settings.namespace,
                bootstrap=settings.bootstrap,
                partitions=settings.partitions,
                input_topic=source,
                output_topic=outputs[variant],
                group=group_id(settings.namespace, f"ceiling-{variant}"),
                web_port=free_port(),
                state_dir=str(settings.state_dir),
            )
            result = measure_hop(
                settings, variant, config, count, time.monotonic() + share, log_dir
            )
            results.append(result)
            log(
                f"ceiling {variant}: {result.messages} messages, {result.per_second:.0f}/s, "
                f"{result.per_cpu_second:.0f} per CPU s"
                + (f" ({result.error})" if result.error else "")
            )
    finally:
        delete_namespace(settings)
        shutil.rmtree(settings.state_dir / settings.namespace, ignore_errors=True)
    return results
