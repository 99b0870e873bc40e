"""A simulated customs office of presentation (COP) and its control officers, for demos, benches
and tests: it answers the SCO's `cop.forwarded` with `cop.goods-presented` and `cop.risk-result`,
and each declaration put `UNDER_CONTROL` (seen on `declaration.status`) with a `control.result`.

What it decides, and why:

- Behaviour is a `Mix` of shares: COPs that never answer (to exercise the COP response timeout),
  that ask for a documentary or physical control, pre-lodged (type D) goods never presented (to
  exercise the 30-day lapse), controls found not satisfactory (B1).
- Every choice is a pure function of (seed, MRN, purpose) through SHA-256, never a shared random
  generator: an MRN gets the same answer whatever the order, the partitioning or the number of
  simulators, and the purposes draw independently of each other.
- Every answer is a pure function of the event it answers: eventId is a UUID v5 of (seed, cause,
  answer), occurredAt is the cause's occurredAt plus `Mix.delay`. Wall time never enters, so a
  campaign replayed into a fresh namespace gets the same answers byte for byte, and an answer
  sent twice is the same event twice, which the decision stage drops by eventId.
- A control answers a declaration's *entry* into UNDER_CONTROL, not the status record that shows
  it: the decision stage may re-publish the status (compaction keeps only the latest), and every
  record of one stay under control yields the identical `control.result`.
- Delivery is at-least-once: answers are produced and flushed before the input offsets are
  committed, so a crash re-sends answers rather than loses them; by the two points above, the
  duplicates are harmless.
- Undecodable input is counted and skipped with a warning: the simulator is a test actor, and the
  stages' own dead-letter topics are where bad bytes are kept.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException
from pydantic import TypeAdapter, ValidationError

from streams.clock import stop_on_signals
from streams.codec import DecodeError, SchemaCatalogue, catalogue
from streams.config import Settings
from streams.events import derived_event_id
from streams.kafka_io import _produce, partitions_of, producer
from streams.topics import event_key, group_id, topic_name

log = logging.getLogger(__name__)

FORWARDED = "cop.forwarded"
STATUS = "declaration.status"
GOODS_PRESENTED = "cop.goods-presented"
RISK_RESULT = "cop.risk-result"
CONTROL_RESULT = "control.result"
UNDECODABLE = "undecodable"
UNDER_CONTROL = "UNDER_CONTROL"
GROUP = "cop-simulator"

Answer = tuple[str, dict[str, Any]]
OnAnswer = Callable[[str, Mapping[str, Any]], None]

# Floating-point sums of shares written with one or two decimals may exceed 1 by an ulp.
_TOLERANCE = 1e-9
_MILLISECOND = timedelta(milliseconds=1)
_DURATION = TypeAdapter(timedelta)


@dataclass(frozen=True)
class Mix:
    """How the simulated COP and officers behave. Shares are fractions in 0..1.

    `silence`, `cop_documentary` and `cop_physical` split the COP's risk answers (no answer at
    all, DOCUMENTARY, PHYSICAL; the rest NONE) and so sum to at most 1. `not_presented` is the
    share of type D declarations never presented, `b1` the share of controls not satisfactory.
    `delay` is the event time between an input and its answer; `seed` selects another, equally
    deterministic, draw.
    """

    silence: float = 0.0
    cop_documentary: float = 0.0
    cop_physical: float = 0.0
    not_presented: float = 0.0
    b1: float = 0.0
    delay: timedelta = timedelta(minutes=5)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("silence", "cop_documentary", "cop_physical", "not_presented", "b1"):
            share = getattr(self, name)
            if (
                isinstance(share, bool)
                or not isinstance(share, int | float)
                or not math.isfinite(share)
                or not 0 <= share <= 1
            ):
                raise ValueError(f"{_KEY_OF[name]} must be a share between 0 and 1, not {share!r}")
        cop = self.silence + self.cop_documentary + self.cop_physical
        if cop > 1 + _TOLERANCE:
            raise ValueError(
                f"silence + documentary + physical must not exceed 1 (they sum to {cop:g})"
            )
        if not isinstance(self.delay, timedelta) or self.delay < timedelta(0):
            raise ValueError(f"delay must be a duration of 0 or more, not {self.delay!r}")
        if self.delay % _MILLISECOND:
            raise ValueError("delay must be a whole number of milliseconds (timestamp-millis)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, not {self.seed!r}")


# CLI keys: the short names are the usual ones, the field names are accepted too.
_FIELD_OF = {
    "silence": "silence",
    "documentary": "cop_documentary",
    "physical": "cop_physical",
    "not-presented": "not_presented",
    "b1": "b1",
    "delay": "delay",
    "seed": "seed",
}
_KEY_OF = {f: k for k, f in _FIELD_OF.items()}
_ALIASES = {**_FIELD_OF, **{f.name.replace("_", "-"): f.name for f in fields(Mix)}}


def parse_mix(text: str) -> Mix:
    """A `Mix` from `key=value,key=value`, e.g.
    `silence=0.05,physical=0.02,documentary=0.05,not-presented=0.1,b1=0.2,delay=PT10M,seed=7`.

    Keys left out keep their default; `delay` is an ISO 8601 duration. Raises ValueError with a
    one-line message on an unknown or repeated key, a value that is not a number, a share outside
    0..1, or COP shares summing to more than 1.
    """
    values: dict[str, Any] = {}
    for item in (i.strip() for i in text.split(",")) if text.strip() else []:
        key, equals, raw = (part.strip() for part in item.partition("="))
        if not equals or not key:
            raise ValueError(f"mix entry {item!r} is not key=value")
        name = _ALIASES.get(key.lower().replace("_", "-"))
        if name is None:
            raise ValueError(f"unknown mix key {key!r} (known: {', '.join(sorted(_FIELD_OF))})")
        if name in values:
            raise ValueError(f"mix key {key!r} is given twice")
        values[name] = _parse_value(name, key, raw)
    return Mix(**values)


def _parse_value(name: str, key: str, raw: str) -> Any:
    if name == "delay":
        try:
            return _DURATION.validate_python(raw)
        except ValidationError:
            raise ValueError(f"delay {raw!r} is not an ISO 8601 duration such as PT5M") from None
    if name == "seed":
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"seed {raw!r} is not an integer") from None
    try:
        return float(raw)  # its range is checked by Mix
    except ValueError:
        raise ValueError(f"{key} {raw!r} is not a number") from None


def draw(seed: int, mrn: str, purpose: str) -> float:
    """A number in [0, 1) fixed by (seed, MRN, purpose) and uniform across MRNs."""
    digest = hashlib.sha256(f"{seed}|{mrn}|{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _event_id(mix: Mix, cause: str, logical: str) -> str:
    return derived_event_id(f"cop-simulator/{mix.seed}/{cause}", logical)


def cop_control(mrn: str, mix: Mix) -> str | None:
    """The COP's risk answer for `mrn`: None when it stays silent, else the control level."""
    share = draw(mix.seed, mrn, "cop-risk")
    for bound, control in (
        (mix.silence, None),
        (mix.silence + mix.cop_documentary, "DOCUMENTARY"),
        (mix.silence + mix.cop_documentary + mix.cop_physical, "PHYSICAL"),
    ):
        if share < bound:
            return control
    return "NONE"


def answer_forward(forward: Mapping[str, Any], mix: Mix) -> list[Answer]:
    """The COP's answers to one Avro-native `cop.forwarded` record, in the order to send them.

    A type D declaration is presented (at the forward's presentation office) unless it falls in
    the `not_presented` share; a type A one was presented at lodging and gets no presentation
    event. Then a `cop.risk-result`, unless the COP falls in the `silence` share.
    """
    mrn = str(forward["mrn"])
    cause = str(forward["eventId"])
    at: datetime = forward["occurredAt"] + mix.delay
    answers: list[Answer] = []
    pre_lodged = forward["declaration"]["additionalDeclarationType"] == "D"
    if pre_lodged and draw(mix.seed, mrn, "presentation") >= mix.not_presented:
        answers.append(
            (
                GOODS_PRESENTED,
                {
                    "eventId": _event_id(mix, cause, GOODS_PRESENTED),
                    "occurredAt": at,
                    "mrn": mrn,
                    "location": str(forward["presentationOffice"]),
                },
            )
        )
    control = cop_control(mrn, mix)
    if control is not None:
        answers.append(
            (
                RISK_RESULT,
                {
                    "eventId": _event_id(mix, cause, RISK_RESULT),
                    "occurredAt": at,
                    "mrn": mrn,
                    "control": control,
                },
            )
        )
    return answers


def _under_control_since(status: Mapping[str, Any]) -> datetime:
    """When the declaration entered its current stay under control: the first of the history's
    trailing UNDER_CONTROL entries (a re-published status may repeat the state)."""
    since: datetime = status["occurredAt"]
    for change in reversed(status.get("history") or []):
        if change["state"] != UNDER_CONTROL:
            break
        since = change["occurredAt"]
    return since


def answer_status(status: Mapping[str, Any], mix: Mix) -> list[Answer]:
    """The officers' `control.result` for one Avro-native `declaration.status` record: one when
    the declaration is UNDER_CONTROL, none otherwise.

    The answer depends on the MRN and on when the declaration entered UNDER_CONTROL, not on the
    status record's own eventId: every status record of the same stay under control gets the
    same event. The result is B1 for the `b1` share of MRNs, else A1; the COP's officers act.
    """
    if status["state"] != UNDER_CONTROL:
        return []
    mrn = str(status["mrn"])
    since = _under_control_since(status)
    cause = f"{mrn}/{UNDER_CONTROL}/{since.isoformat()}"
    return [
        (
            CONTROL_RESULT,
            {
                "eventId": _event_id(mix, cause, CONTROL_RESULT),
                "occurredAt": since + mix.delay,
                "mrn": mrn,
                "result": "B1" if draw(mix.seed, mrn, "control") < mix.b1 else "A1",
                "officeRole": "COP",
            },
        )
    ]


_ANSWERERS: dict[str, Callable[[Mapping[str, Any], Mix], list[Answer]]] = {
    FORWARDED: answer_forward,
    STATUS: answer_status,
}


def simulator_consumer(settings: Settings) -> Consumer:
    """The simulator's consumer: its own group, committed offsets only, so that a restart
    resumes where it stopped and never answers an aborted transaction's events."""
    return Consumer(
        {
            **settings.kafka_client(),
            "group.id": group_id(settings.namespace, GROUP),
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
        }
    )


def run_simulator(
    settings: Settings,
    mix: Mix,
    *,
    idle_timeout: float | None = None,
    stop: threading.Event | None = None,
    on_answer: OnAnswer | None = None,
    batch_size: int = 500,
) -> Counter[str]:
    """Answer the namespace's `cop.forwarded` and `declaration.status` events until stopped.

    Stops when `stop` is set, after `idle_timeout` seconds without a message (counted from the
    start too, so give the group join a few seconds), on SIGTERM or SIGINT (when called from the
    main thread), or on KeyboardInterrupt. `on_answer(logical, record)` sees each answer once it
    is on the broker. Returns the number of answers per logical event name, and of inputs skipped
    as `undecodable`. Raises LookupError if the topics do not exist, RuntimeError if answers
    cannot be delivered (their inputs are then not committed, and are answered on the next run).
    """
    schemas = catalogue(settings.schemas_dir)
    sources = {topic_name(settings.namespace, logical): logical for logical in _ANSWERERS}
    failures: list[str] = []

    def delivered(error: KafkaError | None, message: Any) -> None:
        if error is not None:
            failures.append(f"{message.topic()}: {error.str()}")

    client = producer(settings, on_delivery=delivered)
    consumer = simulator_consumer(settings)
    counts: Counter[str] = Counter()
    stop = stop or threading.Event()
    try:
        for topic in sources:
            partitions_of(settings, consumer, topic)  # a clear error if topics are missing
        consumer.subscribe(list(sources))
        with stop_on_signals(stop):
            last = time.monotonic()
            while not stop.is_set():
                messages = next_batch(consumer, batch_size, timeout=0.5)
                inputs = [m for m in messages if _usable(m)]
                if not inputs:
                    if idle_timeout is not None and time.monotonic() - last >= idle_timeout:
                        break
                    continue
                last = time.monotonic()
                answers = _answers(inputs, sources, schemas, mix, counts)
                for logical, record in answers:
                    _produce(
                        client,
                        topic_name(settings.namespace, logical),
                        event_key(logical, record),
                        schemas.encode(logical, record),
                        None,
                    )
                if client.flush(60) or failures:
                    raise RuntimeError(
                        "answers not delivered: " + "; ".join(failures[:3] or ["flush timed out"])
                    )
                consumer.commit(asynchronous=False)
                for logical, record in answers:
                    counts[logical] += 1
                    if on_answer is not None:
                        on_answer(logical, record)
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
        client.flush(10)
    return counts


def next_batch(consumer: Any, batch_size: int, timeout: float) -> list[Any]:
    """Up to `batch_size` messages, as soon as there is one: waits up to `timeout` for the first,
    then takes only what has already been fetched. `Consumer.consume(n, timeout)` alone would
    wait for `n` messages or the whole timeout, which at a few declarations a second adds up to
    `timeout` to every COP round trip the benchmark measures."""
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(batch_size - 1, timeout=0)] if batch_size > 1 else [first]


def _usable(message: Any) -> bool:
    error = message.error()
    if error is None:
        return True
    if error.fatal():
        raise KafkaException(error)
    # librdkafka retries transient errors itself; they are worth a line, not a stop.
    log.warning("consumer: %s", error.str())
    return False


def _answers(
    inputs: Sequence[Any],
    sources: Mapping[str, str],
    schemas: SchemaCatalogue,
    mix: Mix,
    counts: Counter[str],
) -> list[Answer]:
    answers: list[Answer] = []
    for message in inputs:
        value = message.value()
        if value is None:
            continue  # a tombstone of the compacted status topic: nothing to answer
        logical = sources[message.topic()]
        try:
            record = schemas.decode(logical, value)
        except DecodeError as exc:
            counts[UNDECODABLE] += 1
            log.warning(
                "skipped %s/%s/%s: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                exc,
            )
            continue
        answers.extend(_ANSWERERS[logical](record, mix))
    return answers
