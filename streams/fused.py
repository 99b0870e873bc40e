"""The fused topology's step (docs/decisions.md, Topology): the decision stage takes in an
acceptance and assesses it for risk and duties at once, as the risk and duty stages would have.

The two assessments are the very events those stages write, applied to the MRN's state in a
fixed order, acceptance then risk then duties, as if they had arrived on their topics one
after the other; the outputs of all three steps leave in the acceptance's transaction. The
acceptance is one input, so it has one `declaration.status`, the last step's, whose history
holds every state the three steps went through (docs/decisions.md, Decision, status).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from streams.decision import DecisionConfig, Step, settle, step
from streams.duties import assess_duties
from streams.events import Output, assessment
from streams.reference import ReferenceData
from streams.risk import assess_risk

STATUS = "declaration.status"
# What an assessing stage, or the fused step, runs on an accepted declaration.
Assess = Callable[[Mapping[str, Any], ReferenceData], Mapping[str, Any]]
# In the order the fused step applies them.
ASSESSORS: tuple[tuple[str, Assess], ...] = (
    ("risk.assessed", assess_risk),
    ("duties.assessed", assess_duties),
)


def accept_and_assess(
    state: Mapping[str, Any] | None,
    accepted: Mapping[str, Any],
    config: DecisionConfig,
    reference: ReferenceData,
) -> Step:
    """Apply `declaration.accepted` (`accepted`) to the state of its MRN, then its risk and its
    duty assessments. An acceptance already taken in (a redelivery) is assessed no more.

    The three steps run unsettled and the result is settled once: a declaration forwarded by
    the last of them is never encoded for the state at all."""
    taken = step(state, "declaration.accepted", accepted, config, settled=False)
    if taken.state is None or taken.state.get("acceptedEventId") != accepted["eventId"]:
        return settle(taken, config)  # redelivered, or a second acceptance: assessed before
    current: dict[str, Any] = taken.state
    outputs: list[Output] = list(taken.outputs)
    for logical, assess in ASSESSORS:
        event = assessment(logical, accepted, assess(accepted["declaration"], reference))
        outputs.append(event)
        applied = step(current, logical, event.record, config, settled=False)
        if applied.state is not None:
            current = applied.state
            outputs.extend(applied.outputs)
    return settle(Step(current, last_status_only(outputs)), config)


def last_status_only(outputs: list[Output]) -> list[Output]:
    """`outputs` without every `declaration.status` but the last, which carries the history of
    the others; a compacted status topic keeps only the last one of an MRN anyway."""
    statuses = [i for i, out in enumerate(outputs) if out.logical == STATUS]
    dropped = set(statuses[:-1])
    return [out for i, out in enumerate(outputs) if i not in dropped]
