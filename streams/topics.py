"""The catalogue of events and topics (spec §2), and which stage reads and writes which.

Logical event names are the contract campaigns use; topic names are `<namespace>.<topic>` so that
recette runs live in their own namespace. Keys are derived from the record itself, so that every
producer (gateway, CLI, campaign runner, stage) keys the same event the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

KeyFn = Callable[[Mapping[str, Any]], str | None]


def declaration_key(eori: str, lrn: str) -> str:
    return f"{eori}/{lrn}"


def _lodged_key(record: Mapping[str, Any]) -> str:
    return declaration_key(record["declarant"]["eori"], record["lrn"])


def _rejected_key(record: Mapping[str, Any]) -> str:
    return declaration_key(record["declarantEori"], record["lrn"])


def _mrn_key(record: Mapping[str, Any]) -> str:
    return str(record["mrn"])


def _declarant_key(record: Mapping[str, Any]) -> str:
    return str(record["declarantEori"])


def _no_key(record: Mapping[str, Any]) -> None:
    return None


@dataclass(frozen=True)
class Event:
    logical: str
    topic: str
    key: KeyFn
    compacted: bool = False


EVENTS: dict[str, Event] = {
    e.logical: e
    for e in (
        Event("declaration.lodged", "declarations.lodged", _lodged_key),
        Event("invalidation.requested", "invalidations.requested", _mrn_key),
        Event("cop.goods-presented", "cop.goods-presented", _mrn_key),
        Event("cop.risk-result", "cop.risk-results", _mrn_key),
        Event("control.result", "controls.results", _mrn_key),
        Event("clock.tick", "clock.ticks", _no_key),
        Event("declaration.rejected", "declarations.rejected", _rejected_key),
        Event("declaration.accepted", "declarations.accepted", _mrn_key),
        Event("risk.assessed", "risk.assessed", _mrn_key),
        Event("duties.assessed", "duties.assessed", _mrn_key),
        Event("cop.forwarded", "cop.forwarded", _mrn_key),
        Event("declaration.released", "declarations.released", _mrn_key),
        Event("declaration.not-released", "declarations.not-released", _mrn_key),
        Event("declaration.invalidated", "declarations.invalidated", _mrn_key),
        Event("trader.notification", "trader.notifications", _declarant_key),
        Event("declaration.status", "declarations.status", _mrn_key, compacted=True),
    )
}

DEAD_LETTER = "dead-letter"

# How long a topic that is not compacted keeps its events: long enough to capture a recette
# campaign's run (`cci capture`) days after it, and Kafka's own default, so that a broker left at
# its defaults and the topics created here agree.
RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class Stage:
    """A processing stage: its own consumer group, the events it reads and writes."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    # Faust tables: each has a compacted changelog topic, partitioned like the inputs.
    tables: tuple[str, ...] = ()


STAGES: dict[str, Stage] = {
    s.name: s
    for s in (
        Stage(
            "intake",
            reads=("declaration.lodged",),
            writes=("declaration.accepted", "declaration.rejected", "trader.notification"),
            tables=("declarations", "sequences"),
        ),
        Stage("risk", reads=("declaration.accepted",), writes=("risk.assessed",)),
        Stage("duties", reads=("declaration.accepted",), writes=("duties.assessed",)),
        Stage(
            "decision",
            # One agent reads all of these as one co-partitioned group: every event of an MRN
            # lands on the same partition number, so one worker holds the MRN's state, and a
            # tick on partition p fires exactly the timers of the MRNs living on p.
            reads=(
                "declaration.accepted",
                "risk.assessed",
                "duties.assessed",
                "cop.risk-result",
                "cop.goods-presented",
                "control.result",
                "invalidation.requested",
                "clock.tick",
            ),
            writes=(
                "cop.forwarded",
                "declaration.released",
                "declaration.not-released",
                "declaration.invalidated",
                "trader.notification",
                "declaration.status",
            ),
            tables=("declarations",),
        ),
    )
}

# The assessments, which the fused topology (`Settings.fused_assessment`) leaves to the decision
# stage: it assesses an acceptance when it takes it in, in the same transaction, so the risk
# and duty stages do not run and the decision stage writes their events instead of reading
# them. The events and their topics stay: whoever reads them (a recette campaign, a risk
# analyst's tool) sees the same records either way (docs/decisions.md, Topology).
ASSESSMENTS = ("risk.assessed", "duties.assessed")
FUSED_STAGES: dict[str, Stage] = {
    "intake": STAGES["intake"],
    "decision": Stage(
        "decision",
        reads=tuple(r for r in STAGES["decision"].reads if r not in ASSESSMENTS),
        writes=(*ASSESSMENTS, *STAGES["decision"].writes),
        tables=STAGES["decision"].tables,
    ),
}


def topology(fused_assessment: bool) -> dict[str, Stage]:
    """The stages that run, and what each reads and writes, in the topology chosen."""
    return FUSED_STAGES if fused_assessment else STAGES


def topic_name(namespace: str, logical: str) -> str:
    try:
        return f"{namespace}.{EVENTS[logical].topic}"
    except KeyError:
        known = ", ".join(sorted(EVENTS))
        raise KeyError(f"unknown event {logical!r}; known events: {known}") from None


def dead_letter_topic(namespace: str, stage: str) -> str:
    return f"{namespace}.dead-letters.{stage}"


def group_id(namespace: str, stage: str) -> str:
    return f"{namespace}-{stage}"


def changelog_topic(namespace: str, stage: str, table: str) -> str:
    """Faust's name for the changelog of a stage's table (`<app id>-<table>-changelog`)."""
    return f"{group_id(namespace, stage)}-{table}-changelog"


def stage_changelogs(namespace: str, stage: str) -> list[str]:
    return [changelog_topic(namespace, stage, t) for t in STAGES[stage].tables]


def event_key(logical: str, record: Mapping[str, Any]) -> bytes | None:
    key = EVENTS[logical].key(record)
    return None if key is None else key.encode()


def all_topics(namespace: str) -> dict[str, bool]:
    """Every topic of the namespace that the admin tool creates, with whether it is compacted."""
    topics = {topic_name(namespace, e.logical): e.compacted for e in EVENTS.values()}
    topics.update({dead_letter_topic(namespace, s): False for s in STAGES})
    # Created with the rest rather than by Faust at start-up: a consumer whose metadata does not
    # list a changelog yet is assigned none of its partitions, and its table then looks empty.
    topics.update({t: True for s in STAGES for t in stage_changelogs(namespace, s)})
    return topics


def topic_config(compacted: bool) -> dict[str, str]:
    """The topic-level configuration every creator of the namespace's topics starts from: the
    admin tool (`cci topics create`) and the Kubernetes resources (`streams.k8s`)."""
    if compacted:
        return {"cleanup.policy": "compact"}
    return {"retention.ms": str(int(RETENTION.total_seconds() * 1000))}
