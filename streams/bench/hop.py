"""The one-hop processes the ceilings time: consume a lodged declaration, decode it, encode it
again and produce it to an output topic, nothing else. Each runs in its own process
(`python -m streams.bench.hop VARIANT CONFIG_JSON`) so that its CPU is its own, until SIGTERM.

- `client`: a plain confluent-kafka loop. At-least-once: a batch's offsets are committed once
  its outputs are delivered.
- `faust-eos`: a Faust agent with the stages' own app (`streams.app.make_app`) and processing
  loop (`StageContext.process`): exactly-once, outputs and offsets in one transaction, the
  same settings and the same extensions of Faust as every stage.
- `faust-alo`: a bare Faust agent, at-least-once, with the same broker settings but none of
  the project's extensions. This module imports `streams.app` only for `faust-eos`, because
  importing it changes Faust's Kafka transport for the whole process.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.codec import catalogue
from streams.config import Settings

LODGED = "declaration.lodged"
VARIANTS = ("client", "faust-eos", "faust-alo")
CLIENT_BATCH = 500


@dataclass(frozen=True)
class HopConfig:
    namespace: str
    bootstrap: str
    partitions: int
    input_topic: str
    output_topic: str
    group: str
    web_port: int
    state_dir: str

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> HopConfig:
        return cls(**json.loads(text))

    def settings(self) -> Settings:
        # Faust makes its data directory, not the folders above it.
        (Path(self.state_dir) / self.namespace).mkdir(parents=True, exist_ok=True)
        return Settings(
            bootstrap=self.bootstrap,
            namespace=self.namespace,
            partitions=self.partitions,
            web_port=self.web_port,
            state_dir=Path(self.state_dir),
        )


def run_client(config: HopConfig) -> None:
    from confluent_kafka import Consumer

    from streams.kafka_io import producer

    settings = config.settings()
    schemas = catalogue(settings.schemas_dir)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    consumer = Consumer(
        {
            **settings.kafka_client(),
            "group.id": config.group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    client = producer(settings)
    consumer.subscribe([config.input_topic])
    try:
        while not stop.is_set():
            messages = consumer.consume(CLIENT_BATCH, timeout=0.5)
            produced = False
            for message in messages:
                if message.error() is not None:
                    continue
                record = schemas.decode(LODGED, message.value() or b"")
                value = schemas.encode(LODGED, record)
                while True:
                    try:
                        client.produce(config.output_topic, key=message.key(), value=value)
                        break
                    except BufferError:
                        client.poll(0.05)
                client.poll(0)
                produced = True
            if produced:
                client.flush(30)
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
        client.flush(10)


def _raw_topic(app: Any, name: str) -> Any:
    return app.topic(
        name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def run_faust_eos(config: HopConfig) -> None:
    import faust

    from streams.app import StageContext, make_app
    from streams.metrics import StageMetrics
    from streams.reference import load_reference
    from streams.topics import DEAD_LETTER

    settings = config.settings()
    # make_app names the app (and its group) after the namespace and the stage.
    stage = config.group.removeprefix(f"{config.namespace}-")
    app = make_app(stage, settings)
    output = _raw_topic(app, config.output_topic)
    ctx = StageContext(
        stage=stage,
        settings=settings,
        app=app,
        reference=load_reference(settings.reference_dir),
        catalogue=catalogue(settings.schemas_dir),
        topics={DEAD_LETTER: _raw_topic(app, f"{config.output_topic}.dead-letters")},
        metrics=StageMetrics(stage),
    )

    async def handle(message: Any) -> None:
        record = await ctx.decode(message, LODGED)
        if record is not None:
            await output.send(key=message.key, value=ctx.catalogue.encode(LODGED, record))

    @app.agent(ctx.source(LODGED), name=f"{app.conf.id}-agent")
    async def passthrough(stream: Any) -> None:
        await ctx.process(stream, handle, stage)

    faust.Worker(app, loglevel="warning").execute_from_commandline()


def run_faust_alo(config: HopConfig) -> None:
    import faust

    from streams.faust_settings import client_settings

    settings = config.settings()
    schemas = catalogue(settings.schemas_dir)
    # The broker settings of `streams.app.make_app`, without exactly-once or its extensions.
    app = faust.App(
        config.group,
        store="memory://",
        processing_guarantee="at_least_once",
        **client_settings(settings, config.group),
    )
    source = _raw_topic(app, config.input_topic)
    output = _raw_topic(app, config.output_topic)

    @app.agent(source, name=f"{config.group}-agent")
    async def passthrough(stream: Any) -> None:
        async for event in stream.events():
            record = schemas.decode(LODGED, event.message.value)
            await output.send(key=event.message.key, value=schemas.encode(LODGED, record))

    faust.Worker(app, loglevel="warning").execute_from_commandline()


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in VARIANTS:
        print(f"usage: python -m streams.bench.hop {{{','.join(VARIANTS)}}} CONFIG_JSON")
        return 2
    config = HopConfig.from_json(argv[1])
    {"client": run_client, "faust-eos": run_faust_eos, "faust-alo": run_faust_alo}[argv[0]](config)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
