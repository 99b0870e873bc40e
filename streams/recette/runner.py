"""Run a recette campaign (spec §12) on the real broker.

Every scenario gets a namespace of its own, with its own topics and its own workers of every
stage, so that no scenario can see another's events or ticks; the namespace is deleted after.
That costs a worker start per scenario (a few seconds); `--parallel` runs several scenarios at
once. Steps run in order: `send` publishes the JSON form of a record (`eventId` and `occurredAt`
filled in when absent; a `clock.tick` goes to every partition), `expect` waits for an unclaimed
matching event and claims it, `expect-none` fails if one appears before `within` ends.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from streams.admin import delete_namespace, ensure_topics
from streams.codec import SchemaCatalogue, catalogue
from streams.config import Settings
from streams.jsonform import JsonFormError, from_json, to_json
from streams.kafka_io import complete, publish_records, read
from streams.ports import free_port
from streams.recette.matching import capture_values, describe_mismatch, matches
from streams.recette.model import Expect, ExpectNone, Scenario, Send, substitute
from streams.recette.report import ScenarioResult, StepFailure
from streams.stages import BUILDERS
from streams.topics import EVENTS, dead_letter_topic, topic_name

log = logging.getLogger(__name__)

READY_TIMEOUT = 120.0
SEEN_CAP = 20


class Namespace:
    """A namespace with every stage running in it, and a reader that keeps every event the
    namespace carries, in its JSON form, in arrival order."""

    def __init__(self, settings: Settings, schemas: SchemaCatalogue, log_dir: Path) -> None:
        self.settings = settings
        self.schemas = schemas
        self.log_dir = log_dir
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.changed = threading.Condition()
        self._stop = threading.Event()
        self._processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._reader = threading.Thread(target=self._follow, daemon=True)
        ns = settings.namespace
        self._topics = {topic_name(ns, lg): lg for lg in EVENTS}
        self._topics.update({dead_letter_topic(ns, s): "dead-letter" for s in BUILDERS})

    def start(self) -> None:
        ensure_topics(self.settings)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP": self.settings.bootstrap,
            "CCI_NAMESPACE": self.settings.namespace,
            "CCI_PARTITIONS": str(self.settings.partitions),
            "CCI_STATE_DIR": str(self.settings.state_dir),
            "CCI_REFERENCE_DIR": str(self.settings.reference_dir),
        }
        for stage in sorted(BUILDERS):
            path = self.log_dir / f"{stage}.log"
            with path.open("ab") as out:
                self._processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "streams.cli", "worker", "--stage", stage],
                        env={**env, "CCI_WEB_PORT": str(free_port())},
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            self._logs.append(path)
        deadline = time.monotonic() + READY_TIMEOUT
        for process, path in zip(self._processes, self._logs, strict=True):
            while b"Ready" not in path.read_bytes():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"a worker did not start, see {path}")
                time.sleep(0.2)
        self._reader.start()

    def stop(self) -> None:
        self._stop.set()
        for process in self._processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self._processes:
            try:
                process.wait(40)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._reader.ident is not None:
            self._reader.join(10)
        delete_namespace(self.settings)
        shutil.rmtree(self.settings.state_dir, ignore_errors=True)

    def _follow(self) -> None:
        try:
            for message in read(self.settings, list(self._topics), follow=True, stop=self._stop):
                logical, record = self.schemas.decode_any(message.value or b"")
                body = to_json(self.schemas.latest(logical).schema, record)
                with self.changed:
                    self.events.append((self._topics[message.topic], body))
                    self.changed.notify_all()
        except Exception:  # the namespace is deleted under the reader at the end
            log.debug("reader of %s stopped", self.settings.namespace, exc_info=True)

    def send(self, logical: str, value: dict[str, Any]) -> None:
        record = from_json(self.schemas.latest(logical).schema, complete(logical, value))
        publish_records(self.settings, self.schemas, logical, [record])


class _Failed(Exception):
    def __init__(self, failure: StepFailure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def run_scenario(
    scenario: Scenario,
    base: Settings,
    schemas: SchemaCatalogue,
    work_dir: Path,
    prefix: str = "rc",
) -> ScenarioResult:
    namespace = f"{prefix}-{uuid.uuid4().hex[:10]}"
    settings = base.model_copy(
        update={"namespace": namespace, "state_dir": work_dir / namespace / "state"}
    )
    space = Namespace(settings, schemas, work_dir / namespace / "logs")
    began = time.monotonic()
    failure: StepFailure | None = None
    try:
        space.start()
        _play(scenario, space)
    except _Failed as failed:
        failure = failed.failure
    except Exception as exc:  # a broker or worker failure fails the scenario, not the run
        failure = StepFailure(0, scenario.line, "error", "", {}, [], f"{type(exc).__name__}: {exc}")
    finally:
        try:
            space.stop()
        except Exception:
            log.warning("could not tear down namespace %s", namespace, exc_info=True)
    return ScenarioResult(
        scenario=scenario,
        passed=failure is None,
        duration=time.monotonic() - began,
        failure=failure,
        events=list(space.events),
    )


def _play(scenario: Scenario, space: Namespace) -> None:
    variables: dict[str, str] = {}
    claimed: set[int] = set()
    for index, step in enumerate(scenario.steps):  # 0-based, as the reports expect
        if isinstance(step, Send):
            value = substitute(step.value, variables)
            try:
                space.send(step.logical, value)
            except (JsonFormError, ValueError) as exc:
                raise _Failed(
                    StepFailure(index, step.line, "send", step.logical, value, [], str(exc))
                ) from None
        elif isinstance(step, Expect):
            match = substitute(step.match, variables)
            found = _wait(space, step.logical, match, claimed, step.within)
            if found is None:
                raise _Failed(_missing(index, step, match, space))
            claimed.add(found)
            try:
                variables.update(capture_values(step.capture, space.events[found][1]))
            except KeyError as exc:
                raise _Failed(
                    StepFailure(index, step.line, "expect", step.logical, match, [], str(exc))
                ) from None
        elif isinstance(step, ExpectNone):
            match = substitute(step.match, variables)
            found = _wait(space, step.logical, match, claimed, step.within)
            if found is not None:
                raise _Failed(
                    StepFailure(
                        index,
                        step.line,
                        "expect-none",
                        step.logical,
                        match,
                        [space.events[found][1]],
                        f"a matching {step.logical} appeared within {step.within:g}s",
                    )
                )


def _wait(
    space: Namespace,
    logical: str,
    match: Any,
    claimed: set[int],
    within: float,
) -> int | None:
    """The index of the first unclaimed event of `logical` matching `match` seen before
    `within` seconds pass, or None."""
    deadline = time.monotonic() + within
    checked = 0
    with space.changed:
        while True:
            events = space.events
            for index in range(checked, len(events)):
                name, body = events[index]
                if name == logical and index not in claimed and matches(match, body):
                    return index
            checked = len(events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            space.changed.wait(min(remaining, 0.5))


def _missing(index: int, step: Expect, match: Any, space: Namespace) -> StepFailure:
    seen = [body for name, body in space.events if name == step.logical][:SEEN_CAP]
    closest = f"; closest: {describe_mismatch(match, seen[0])}" if seen else ""
    return StepFailure(
        index,
        step.line,
        "expect",
        step.logical,
        match,
        seen,
        f"no matching {step.logical} within {step.within:g}s ({len(seen)} seen){closest}",
    )


def run_campaign(
    scenarios: list[Scenario],
    settings: Settings,
    work_dir: Path,
    parallel: int = 1,
    on_result: Callable[[ScenarioResult], None] | None = None,
    prefix: str = "rc",
) -> list[ScenarioResult]:
    """Run every scenario, `parallel` at a time; results in the campaign's order."""
    schemas = catalogue(settings.schemas_dir)

    def one(scenario: Scenario) -> ScenarioResult:
        result = run_scenario(scenario, settings, schemas, work_dir, prefix)
        if on_result is not None:
            on_result(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        return list(pool.map(one, scenarios))
