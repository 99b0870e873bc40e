"""A whole pipeline of stages in one namespace, driven from a test as the gateway, the COP, the
officers and the clock would drive it, with a reader that keeps everything the stages emit."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from streams.admin import delete_namespace, ensure_topics
from streams.codec import SchemaCatalogue
from streams.config import ROOT, Settings
from streams.jsonform import from_json
from streams.kafka_io import publish_records, read
from streams.reference import load_reference
from streams.risk import randomly_selected
from streams.stages import BUILDERS
from streams.topics import EVENTS, dead_letter_topic, topic_name, topology
from tests.integration.conftest import WorkerProcess

FIXTURE = ROOT / "tests" / "fixtures" / "declaration-valid.json"
BASE = datetime(2026, 4, 1, 8, 0, tzinfo=UTC)
TWO_HOURS = timedelta(hours=2)
MS = timedelta(milliseconds=1)


class Pipeline:
    """The stages of one namespace, with a reader that keeps every event they emit."""

    def __init__(self, settings: Settings, schemas: SchemaCatalogue, log_dir: Path) -> None:
        self.settings = settings
        self.schemas = schemas
        running = topology(settings.fused_assessment)
        self.workers = {s: WorkerProcess(settings, s, log_dir) for s in sorted(running)}
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Condition()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._topics = {topic_name(settings.namespace, lg): lg for lg in EVENTS}
        self._topics.update(
            {dead_letter_topic(settings.namespace, s): "dead-letter" for s in BUILDERS}
        )

    def start(self) -> Pipeline:
        for worker in self.workers.values():
            worker.launch()
        for worker in self.workers.values():
            worker.wait_ready()
        self._reader.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._reader.ident is not None:
            self._reader.join(5)
        for worker in self.workers.values():
            worker.stop()

    def _follow(self) -> None:
        try:
            for message in read(self.settings, list(self._topics), follow=True, stop=self._stop):
                _, record = self.schemas.decode_any(message.value or b"")
                with self._lock:
                    self.seen.append((self._topics[message.topic], record))
                    self._lock.notify_all()
        except Exception:  # the namespace is deleted under the reader at the end
            return

    def send(self, logical: str, **fields: Any) -> dict[str, Any]:
        record = {"eventId": str(uuid.uuid4()), **fields}
        publish_records(self.settings, self.schemas, logical, [record])
        return record

    def send_many(self, logical: str, records: list[dict[str, Any]], client: Any = None) -> None:
        """`client`: a producer to reuse; one is made for the call otherwise."""
        publish_records(
            self.settings,
            self.schemas,
            logical,
            [{"eventId": str(uuid.uuid4()), **fields} for fields in records],
            client=client,
        )

    def tick(self, at: datetime) -> None:
        self.send("clock.tick", occurredAt=at)

    def events(self, logical: str, **match: Any) -> list[dict[str, Any]]:
        """Events seen so far whose fields equal, or satisfy when it is callable, each match."""
        with self._lock:
            return [
                r
                for lg, r in self.seen
                if lg == logical
                and all(v(r.get(k)) if callable(v) else r.get(k) == v for k, v in match.items())
            ]

    def expect(self, logical: str, timeout: float = 60.0, **match: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = self.events(logical, **match)
                if found:
                    return found[0]
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {logical} matching {match} within {timeout}s")
                self._lock.wait(0.5)

    def settle(self, seconds: float = 4.0) -> None:
        """Room for a wrong output to show up: several commit intervals of every stage."""
        time.sleep(seconds)

    def lodge(
        self, at: datetime = BASE, change: Change | None = None, lrn: str | None = None
    ) -> str:
        """Lodge a variant of the valid fixture, under a fresh LRN that random selection leaves
        alone unless `lrn` is given; wait until it is forwarded; return its MRN."""
        return self.lodge_many(at, change, lrns=[lrn] if lrn else None)[0]

    def lodge_many(
        self,
        at: datetime = BASE,
        change: Change | None = None,
        count: int = 1,
        lrns: list[str] | None = None,
    ) -> list[str]:
        """`lrns` fixes the LRNs and, from them, the event ids: the same lodging twice."""
        schema = self.schemas.latest("declaration.lodged").schema
        records = []
        wanted: list[str | None] = list(lrns) if lrns else [None] * count
        for lrn in wanted:
            document = json.loads(FIXTURE.read_text())
            document["lrn"] = lrn or unselected_lrn(document["declarant"]["eori"])
            if change is not None:
                change(document)
            event_id = uuid.uuid5(uuid.NAMESPACE_URL, document["lrn"]) if lrn else uuid.uuid4()
            envelope = {"eventId": str(event_id), "occurredAt": at.isoformat()}
            records.append(from_json(schema, {**envelope, **document}))
        publish_records(self.settings, self.schemas, "declaration.lodged", records)
        mrns = [str(self.expect("declaration.accepted", lrn=r["lrn"])["mrn"]) for r in records]
        for mrn in mrns:
            self.expect("cop.forwarded", mrn=mrn)
        return mrns

    def codes(self, mrn: str, at_least: int = 0, timeout: float = 30.0) -> list[str]:
        """The trader's message codes for `mrn`, once at least `at_least` have been read: an
        outcome and its notification are committed together but read from two topics."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                codes = [n["messageCode"] for n in self.events("trader.notification", mrn=mrn)]
                if len(codes) >= at_least or time.monotonic() > deadline:
                    return codes
                self._lock.wait(0.5)

    def terminal(self, mrn: str) -> list[str]:
        return [
            lg
            for lg in (
                "declaration.released",
                "declaration.not-released",
                "declaration.invalidated",
            )
            for _ in self.events(lg, mrn=mrn)
        ]

    def status(self, mrn: str) -> tuple[int, dict[str, Any]]:
        port = self.workers["decision"].port
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/declarations/{mrn}") as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


Change = Callable[[dict[str, Any]], None]


def unselected_lrn(eori: str) -> str:
    """A fresh LRN that random selection (0.5 %) does not pick: a test chooses its control."""
    rate = load_reference().random_selection.rate
    while True:
        lrn = f"IT-{uuid.uuid4().hex[:16].upper()}"
        if not randomly_selected(eori, lrn, rate):
            return lrn


def toys_from_china(document: dict[str, Any]) -> None:
    document["goodsItems"][0].update(commodityCode="9503004100", countryOfOrigin="CN")


def pre_lodged(document: dict[str, Any]) -> None:
    document["additionalDeclarationType"] = "D"


@contextmanager
def running_pipeline(
    bootstrap: str,
    schemas: SchemaCatalogue,
    directory: Path,
    kind: type[Pipeline] = Pipeline,
    fused: bool = False,
) -> Iterator[Pipeline]:
    """Every stage of the topology running in a fresh namespace, torn down after; `kind` may
    read differently."""
    directory.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        bootstrap=bootstrap,
        namespace=f"it-{uuid.uuid4().hex[:10]}",
        partitions=3,
        state_dir=directory / "state",
        fused_assessment=fused,
    )
    ensure_topics(settings)
    running = kind(settings, schemas, directory)
    try:
        yield running.start()
    finally:
        running.stop()
        delete_namespace(settings)
