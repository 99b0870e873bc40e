"""`cci bench micro`: declarations per second per core for the pure parts of the pipeline.

Each case runs one function over a fixed generated set (the same seed gives the same set)
in this one process and thread, so its rate is that of one core. The rate is taken over the
process's CPU time, not the wall clock: on a machine shared with others (two cores here, a
broker and workers beside) the wall clock counts the time others held the core, the CPU time
does not. Both are reported. A warm-up pass runs first (caches, lazily built tables).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from streams.codec import Embedded, SchemaCatalogue, catalogue
from streams.config import Settings
from streams.demo import LODGED_EVENT, generated_load
from streams.duties import assess_duties
from streams.lodging import lodge
from streams.mrn import allocate
from streams.reference import ReferenceData, load_reference
from streams.risk import assess_risk
from streams.validation import validate

SEED = 7
INVALID_SHARE = 0.1
ACCEPTED_EVENT = "declaration.accepted"
WARM_UP = 50


@dataclass(frozen=True)
class MicroResult:
    name: str
    what: str
    operations: int
    cpu_seconds: float
    wall_seconds: float

    @property
    def per_core(self) -> float:
        """Operations per CPU second: the rate of one core."""
        return self.operations / self.cpu_seconds if self.cpu_seconds > 0 else 0.0

    @property
    def micros(self) -> float:
        return 1e6 * self.cpu_seconds / self.operations if self.operations else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "per_core_per_second": round(self.per_core, 1),
            "cpu_micros_per_operation": round(self.micros, 2),
            "wall_per_second": round(self.operations / self.wall_seconds, 1)
            if self.wall_seconds > 0
            else 0.0,
        }


def measure(
    name: str, what: str, items: Sequence[Any], call: Callable[[Any], object], seconds: float
) -> MicroResult:
    """Call `call` on every item, pass after pass, until `seconds` of CPU time are spent (at
    least one whole pass, so every item of the set counts)."""
    for item in items[:WARM_UP]:
        call(item)
    done = 0
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    while True:
        for item in items:
            call(item)
        done += len(items)
        if time.process_time() - cpu_start >= seconds:
            break
    return MicroResult(
        name,
        what,
        done,
        time.process_time() - cpu_start,
        time.perf_counter() - wall_start,
    )


@dataclass(frozen=True)
class MicroSet:
    """The generated declarations a micro run times, Avro-native and encoded."""

    records: list[dict[str, Any]]
    valid: list[dict[str, Any]]
    encoded: list[bytes]


def micro_set(
    settings: Settings, schemas: SchemaCatalogue, reference: ReferenceData, count: int, seed: int
) -> MicroSet:
    load = generated_load(settings, schemas, reference, count, INVALID_SHARE, 0, seed)
    records = load.records
    valid = [r for r in records if not validate(r, reference, settings.country)]
    encoded = [schemas.encode(LODGED_EVENT, r) for r in records]
    return MicroSet(records, valid, encoded)


def _acceptance(
    schemas: SchemaCatalogue, lodge_one: Callable[[dict[str, Any]], Any], data: bytes
) -> tuple[dict[str, Any], Embedded] | None:
    """The acceptance the intake makes of the lodged message `data`, and `data` embedded;
    None when the declaration is rejected."""
    received = schemas.decode(LODGED_EVENT, data)
    accepted = [o for o in lodge_one(received).outputs if o.logical == ACCEPTED_EVENT]
    return (accepted[0].record, Embedded("declaration", data, received)) if accepted else None


def run_micro(
    settings: Settings, count: int = 1000, seconds: float = 2.0, seed: int = SEED
) -> tuple[list[MicroResult], dict[str, Any]]:
    """Time every case; return the results and what the set was."""
    schemas = catalogue(settings.schemas_dir)
    reference = load_reference(settings.reference_dir)
    country = settings.country
    data = micro_set(settings, schemas, reference, count, seed)
    year = data.records[0]["occurredAt"].year
    sequences = list(range(len(data.records)))
    accepted_state: dict[str, Any] | None = None

    def lodge_one(record: dict[str, Any]) -> object:
        return lodge(record, accepted_state, 0, 0, reference, country)

    made = (_acceptance(schemas, lodge_one, encoded) for encoded in data.encoded)
    acceptances = [a for a in made if a is not None]

    cases: list[tuple[str, str, Sequence[Any], Callable[[Any], object]]] = [
        (
            "validation",
            "rules R010-R090 on every declaration (valid and invalid)",
            data.records,
            lambda r: validate(r, reference, country),
        ),
        (
            "mrn",
            "MRN allocation (sequence to MRN with check digit)",
            sequences,
            lambda n: allocate(year, country, n % 1296, n),
        ),
        (
            "risk",
            "risk assessment of a valid declaration",
            data.valid,
            lambda r: assess_risk(r, reference),
        ),
        (
            "duties",
            "duty assessment of a valid declaration",
            data.valid,
            lambda r: assess_duties(r, reference),
        ),
        (
            "intake",
            "the intake's whole pure step (validation, MRN, acceptance or rejection, notice)",
            data.records,
            lodge_one,
        ),
        (
            "avro_encode",
            "declaration.lodged to Avro single-object bytes",
            data.records,
            lambda r: schemas.encode(LODGED_EVENT, r),
        ),
        (
            "avro_decode",
            "Avro single-object bytes to declaration.lodged",
            data.encoded,
            lambda b: schemas.decode(LODGED_EVENT, b),
        ),
        (
            "avro_accepted",
            "declaration.accepted (the declaration inside) to Avro, written whole",
            acceptances,
            lambda a: schemas.encode(ACCEPTED_EVENT, a[0]),
        ),
        (
            "avro_accepted_copied",
            "the same, the declaration's bytes copied from the lodged message (the intake's way)",
            acceptances,
            lambda a: schemas.encode(ACCEPTED_EVENT, a[0], a[1]),
        ),
    ]
    results = [measure(name, what, items, call, seconds) for name, what, items, call in cases]
    sizes = [len(b) for b in data.encoded]
    described = {
        "declarations": len(data.records),
        "valid": len(data.valid),
        "seed": seed,
        "invalid_share": INVALID_SHARE,
        "seconds_per_case": seconds,
        "mean_encoded_bytes": round(sum(sizes) / len(sizes), 1) if sizes else 0,
    }
    return results, described
