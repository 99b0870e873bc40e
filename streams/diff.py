"""Compare what two namespaces decided for the same declarations.

What is decided, and why:

- A declaration is identified by its declarant EORI and LRN (`EORI/LRN`, the key of spec §2),
  never by its MRN: two namespaces fed the same lodgings may allocate different MRNs (another
  partition count, another order). Events keyed by MRN are attributed through the
  `declaration.accepted` of the same namespace (MRN → EORI/LRN); one whose MRN no acceptance
  names is kept under `MRN <mrn>`.
- The aspects compared are the outcomes a trader, a COP or an auditor sees, each rendered as
  one deterministic string so that a difference reads in a table as well as in JSON:
  `acceptance` (accepted, or rejected with its sorted code + pointer pairs), `control` (SCO
  control, matched profiles, random selection, from `risk.assessed`), `duties` (total duty and
  VAT, then duty and VAT per item), `forward` (the COP instruction of `cop.forwarded`),
  `decision` (released / not-released and reason / invalidated / none) and `notifications`
  (the message codes in the order the trader received them).
- Event ids, `occurredAt`, MRNs and status histories are not compared: they differ between
  namespaces by construction (ids and MRNs) or duplicate the aspects above (status).
- A declaration only one namespace knows gives one `declaration` difference, not one per aspect.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streams.config import Settings
from streams.topics import declaration_key, topic_name

ASPECTS = ("acceptance", "control", "duties", "forward", "decision", "notifications")
NONE = "none"

# The events the comparison reads, in spec §2 order.
EVENTS = (
    "declaration.lodged",
    "declaration.rejected",
    "declaration.accepted",
    "risk.assessed",
    "duties.assessed",
    "cop.forwarded",
    "declaration.released",
    "declaration.not-released",
    "declaration.invalidated",
    "trader.notification",
)

Event = tuple[str, Mapping[str, Any]]


@dataclass(frozen=True, order=True)
class Difference:
    declaration: str
    aspect: str
    a: str
    b: str

    def as_dict(self) -> dict[str, str]:
        return {"declaration": self.declaration, "aspect": self.aspect, "a": self.a, "b": self.b}


@dataclass
class _Outcome:
    values: dict[str, list[str]] = field(default_factory=dict)

    def add(self, aspect: str, value: str) -> None:
        self.values.setdefault(aspect, []).append(value)

    def render(self, aspect: str) -> str:
        found = self.values.get(aspect)
        if not found:
            return NONE
        if aspect == "notifications":
            return " ".join(found)
        # More than one is itself an outcome worth seeing (a duplicate): keep them all, sorted.
        return " + ".join(sorted(found))


def outcomes(events: Iterable[Event]) -> dict[str, dict[str, str]]:
    """Every declaration's aspects, by `EORI/LRN`."""
    events = list(events)
    declaration_of = {
        str(r["mrn"]): declaration_key(r["declarantEori"], r["lrn"])
        for logical, r in events
        if logical == "declaration.accepted"
    }
    found: dict[str, _Outcome] = {}

    def at(key: str) -> _Outcome:
        return found.setdefault(key, _Outcome())

    def by_mrn(record: Mapping[str, Any]) -> _Outcome:
        mrn = str(record["mrn"])
        return at(declaration_of.get(mrn, f"MRN {mrn}"))

    for logical, r in events:
        if logical == "declaration.lodged":
            at(declaration_key(r["declarant"]["eori"], r["lrn"]))
        elif logical == "declaration.rejected":
            errors = sorted((e["code"], e["pointer"]) for e in r["errors"])
            detail = ", ".join(f"{code} {pointer}" for code, pointer in errors)
            at(declaration_key(r["declarantEori"], r["lrn"])).add(
                "acceptance", f"rejected: {detail}"
            )
        elif logical == "declaration.accepted":
            by_mrn(r).add("acceptance", "accepted")
        elif logical == "risk.assessed":
            profiles = ",".join(sorted(r["matchedProfiles"]))
            random = " random" if r["randomlySelected"] else ""
            by_mrn(r).add("control", f"{r['control']} [{profiles}]{random}")
        elif logical == "duties.assessed":
            items = "; ".join(
                f"{i['sequenceNumber']}: {i['duty']}/{i['vat']}"
                for i in sorted(r["items"], key=lambda i: int(i["sequenceNumber"]))
            )
            by_mrn(r).add("duties", f"duty {r['totalDuty']} vat {r['totalVat']} ({items})")
        elif logical == "cop.forwarded":
            by_mrn(r).add("forward", str(r["instruction"]))
        elif logical == "declaration.released":
            by_mrn(r).add("decision", "released")
        elif logical == "declaration.not-released":
            by_mrn(r).add("decision", f"not-released {r['reason']}")
        elif logical == "declaration.invalidated":
            by_mrn(r).add("decision", "invalidated")
        elif logical == "trader.notification":
            at(declaration_key(r["declarantEori"], r["lrn"])).add(
                "notifications", str(r["messageCode"])
            )
    return {key: {a: o.render(a) for a in ASPECTS} for key, o in found.items()}


def compare(a: Iterable[Event], b: Iterable[Event]) -> list[Difference]:
    """Every aspect in which namespace `a` and `b` decided a declaration differently, sorted by
    declaration then in the order of `ASPECTS`."""
    left, right = outcomes(a), outcomes(b)
    result: list[Difference] = []
    for key in sorted(left.keys() | right.keys()):
        if key not in right:
            result.append(Difference(key, "declaration", "present", "absent"))
        elif key not in left:
            result.append(Difference(key, "declaration", "absent", "present"))
        else:
            result.extend(
                Difference(key, aspect, left[key][aspect], right[key][aspect])
                for aspect in ASPECTS
                if left[key][aspect] != right[key][aspect]
            )
    return result


def read_events(settings: Settings, idle_timeout: float = 5.0) -> list[Event]:
    """The decodable events of `EVENTS` in a namespace, read committed and without any consumer
    group; `LookupError` when a topic is missing. Undecodable messages are skipped: they have
    no declaration."""
    from streams.codec import DecodeError, catalogue
    from streams.kafka_io import read

    schemas = catalogue(settings.schemas_dir)
    logical_of = {topic_name(settings.namespace, lg): lg for lg in EVENTS}
    events: list[Event] = []
    for message in read(settings, list(logical_of), idle_timeout=idle_timeout):
        logical = logical_of[message.topic]
        try:
            events.append((logical, schemas.decode(logical, message.value or b"")))
        except DecodeError:
            continue
    return events


def summary(differences: Sequence[Difference]) -> dict[str, int]:
    """How many differences per aspect."""
    counts: dict[str, int] = {}
    for d in differences:
        counts[d.aspect] = counts.get(d.aspect, 0) + 1
    return counts
