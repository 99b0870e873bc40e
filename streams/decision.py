"""What the SCO decides for one accepted declaration (spec §8-§10), as a pure function of the
declaration's state and one input event.

`step(state, logical, record, config)` returns the new state and the events to emit. The state is
one JSON-able dict per MRN (the decision stage keeps it in a table keyed by MRN); times are epoch
milliseconds of event time, decimals are strings, the declaration is kept (Avro-encoded, see
`keep_declaration`) until it has been forwarded. Nothing here reads a clock: a timer fires only
when a `clock.tick` whose `occurredAt` is at or past its deadline is stepped, so the same inputs
in the same order give the same outputs.

The inputs of one MRN arrive on several topics, so their order is not guaranteed: `risk.assessed`
or `duties.assessed` may be read before `declaration.accepted`. Those two come from our own
stages, so they are kept until the acceptance arrives. Events from outside (the COP, officers,
the trader) for an MRN that was never accepted are refused (`unknown_mrn`), and the caller sends
them to the dead letters.

The choices the specification leaves open are written down in `docs/decisions.md` (Decision).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from streams.codec import SchemaCatalogue
from streams.events import Output, derived_event_id, notification, output
from streams.jsonform import from_json

ACCEPTED = "ACCEPTED"
RISK_ASSESSED = "RISK_ASSESSED"
FORWARDED = "FORWARDED"
UNDER_CONTROL = "UNDER_CONTROL"
RELEASED = "RELEASED"
NOT_RELEASED = "NOT_RELEASED"
INVALIDATED = "INVALIDATED"
TERMINAL = frozenset({RELEASED, NOT_RELEASED, INVALIDATED})
STATES = (ACCEPTED, RISK_ASSESSED, FORWARDED, UNDER_CONTROL, RELEASED, NOT_RELEASED, INVALIDATED)

_LEVEL = {"NONE": 0, "DOCUMENTARY": 1, "PHYSICAL": 2}

# How many input event ids of one MRN are remembered to ignore a redelivery. An MRN sees a
# handful of events in its life; the bound only protects the state from a flood.
EVENT_ID_MEMORY = 64

LODGED = "declaration.lodged"


@dataclass(frozen=True)
class DecisionConfig:
    cop_response_timeout: timedelta
    lapse_after: timedelta
    schemas: SchemaCatalogue  # encodes the declaration the state keeps until the forward


@dataclass(frozen=True)
class Step:
    state: dict[str, Any] | None  # None: nothing to store (redelivery, or a refused event)
    outputs: list[Output] = field(default_factory=list)
    unknown_mrn: bool = False


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def millis(instant: datetime) -> int:
    # Integer arithmetic: `timestamp() * 1000` through a float can land one millisecond short.
    return (instant - _EPOCH) // _MS


def instant(ms: int) -> datetime:
    return _EPOCH + ms * _MS


def keep_declaration(declaration: Mapping[str, Any], schemas: SchemaCatalogue) -> str:
    """The declaration as the state keeps it until the forward: its Avro single-object encoding,
    in base64. Less than half the size of its JSON form, and about a third of the CPU to write and
    read back; the state is written, and read from the store, for every input until then."""
    return base64.b64encode(schemas.encode(LODGED, declaration)).decode("ascii")


@dataclass(frozen=True)
class Held:
    """A declaration taken in by a step that has not been kept yet: the very value decoded from
    the acceptance. `step(..., settled=False)` leaves it in the state, so that a caller applying
    more inputs before the state is stored (`streams.fused`) forwards it without encoding it
    for the state and decoding it back; `settle` keeps it before the state leaves."""

    declaration: Mapping[str, Any]


def kept_declaration(
    kept: str | dict[str, Any] | Held, schemas: SchemaCatalogue
) -> Mapping[str, Any]:
    """The declaration a state keeps, Avro-native; a state written before the Avro form was
    kept holds the JSON form of spec §3 instead (docs/decisions.md, Decision)."""
    if isinstance(kept, Held):
        return kept.declaration
    if isinstance(kept, dict):
        declaration: dict[str, Any] = from_json(schemas.latest(LODGED).schema, kept)
        return declaration
    # The fingerprint in the encoding resolves an earlier version of the schema to the latest.
    return schemas.decode(LODGED, base64.b64decode(kept))


def final_control(state: Mapping[str, Any]) -> str | None:
    """max(SCO control, COP control) once both are known (a COP timeout counts as NONE)."""
    sco, cop = state.get("scoControl"), state.get("copControl")
    if sco is None or cop is None:
        return None
    return str(sco if _LEVEL[sco] >= _LEVEL[cop] else cop)


def deadlines(state: Mapping[str, Any]) -> list[int]:
    """The pending timer deadlines of a state, for the stage's timer index."""
    if state.get("state") in TERMINAL:
        return []
    return [d for d in (state.get("copDeadline"), state.get("lapseDeadline")) if d is not None]


def step(
    state: Mapping[str, Any] | None,
    logical: str,
    record: Mapping[str, Any],
    config: DecisionConfig,
    *,
    settled: bool = True,
) -> Step:
    """Apply one input event to the state of its MRN. With `settled=False` a declaration the
    acceptance brings stays `Held` in the state: `settle` the last step before storing it."""
    result = _step(state, logical, record, config)
    return settle(result, config) if settled else result


def settle(result: Step, config: DecisionConfig) -> Step:
    """`result` with a declaration still held in its state kept, as the state stores it."""
    state = result.state
    if state is None or not isinstance(state.get("declaration"), Held):
        return result
    held: Held = state["declaration"]
    kept = {**state, "declaration": keep_declaration(held.declaration, config.schemas)}
    return Step(kept, result.outputs, result.unknown_mrn)


def _step(
    state: Mapping[str, Any] | None,
    logical: str,
    record: Mapping[str, Any],
    config: DecisionConfig,
) -> Step:
    if logical == "clock.tick":
        if state is None:
            return Step(None)
        return _tick(dict(state), record, config)
    event_id = record["eventId"]
    if state is not None and event_id in state.get("eventIds", ()):
        return Step(None)
    if logical in ("risk.assessed", "duties.assessed", "declaration.accepted"):
        current = dict(state) if state is not None else _empty(record["mrn"])
    elif state is None or not state.get("accepted"):
        return Step(None, unknown_mrn=True)
    else:
        current = dict(state)
    current["eventIds"] = [*current.get("eventIds", []), event_id][-EVENT_ID_MEMORY:]
    return _HANDLERS[logical](current, record, config)


def _empty(mrn: str) -> dict[str, Any]:
    return {"mrn": mrn, "accepted": False, "state": None, "history": [], "eventIds": []}


class _Emitter:
    """Collects the outputs of one step; every output's eventId derives from the input's."""

    def __init__(self, state: dict[str, Any], record: Mapping[str, Any]) -> None:
        self.state = state
        self.cause = f"{record['eventId']}|{state['mrn']}"
        self.at: datetime = record["occurredAt"]
        self.outputs: list[Output] = []
        self.moved = False

    def event(self, logical: str, fields: Mapping[str, Any], cause: str | None = None) -> None:
        record = {
            "eventId": derived_event_id(cause or self.cause, logical),
            "occurredAt": self.at,
            "mrn": self.state["mrn"],
            **fields,
        }
        self.outputs.append(output(logical, record))

    def notify(self, code: str, **extra: Any) -> None:
        s = self.state
        self.outputs.append(
            notification(self.cause, self.at, code, s["lrn"], s["declarantEori"], s["mrn"], **extra)
        )

    def move(self, new_state: str) -> None:
        self.state["state"] = new_state
        self.state["history"] = [*self.state["history"], [new_state, millis(self.at)]]
        self.moved = True

    def done(self) -> Step:
        if self.moved:
            s = self.state
            self.event(
                "declaration.status",
                {
                    "lrn": s["lrn"],
                    "state": s["state"],
                    "history": [
                        {"state": name, "occurredAt": instant(ms)} for name, ms in s["history"]
                    ],
                },
            )
        return Step(self.state, self.outputs)


def _accepted(state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig) -> Step:
    if state["accepted"]:
        return Step(state)  # a second acceptance of one MRN cannot come from intake; keep the first
    declaration = record["declaration"]
    accepted_at = millis(record["occurredAt"])
    state.update(
        accepted=True,
        lrn=record["lrn"],
        declarantEori=record["declarantEori"],
        acceptedAt=accepted_at,
        acceptedEventId=record["eventId"],
        presentationOffice=declaration["presentationOffice"],
        declaration=Held(declaration),
        # A standard declaration is presented when it is lodged; a pre-lodged one waits.
        presented=declaration["additionalDeclarationType"] != "D",
    )
    if not state["presented"]:
        state["lapseDeadline"] = accepted_at + _ms(config.lapse_after)
    out = _Emitter(state, record)
    out.move(ACCEPTED)
    if state.get("scoControl") is not None:
        out.move(RISK_ASSESSED)
    _advance(out, config)
    return out.done()


def _risk(state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig) -> Step:
    if state.get("scoControl") is not None:
        return Step(state)
    state["scoControl"] = record["control"]
    if not state["accepted"]:
        return Step(state)
    out = _Emitter(state, record)
    if state["state"] not in TERMINAL:
        out.move(RISK_ASSESSED)
    _advance(out, config)
    return out.done()


def _duties(state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig) -> Step:
    if state.get("duties") is not None:
        return Step(state)
    state["duties"] = {
        "totalDuty": str(record["totalDuty"]),
        "totalVat": str(record["totalVat"]),
        "vatMemberState": record["vatMemberState"],
    }
    if not state["accepted"]:
        return Step(state)
    out = _Emitter(state, record)
    _advance(out, config)
    return out.done()


def _cop_risk(state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig) -> Step:
    if state["state"] in TERMINAL or state.get("copControl") is not None:
        # Late (after a timeout or an outcome) or repeated: the decision already stands.
        return Step(state)
    state["copControl"] = record["control"]
    state["copDeadline"] = None
    out = _Emitter(state, record)
    _advance(out, config)
    return out.done()


def _presented(state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig) -> Step:
    if state["state"] in TERMINAL or state["presented"]:
        return Step(state)
    state["presented"] = True
    state["lapseDeadline"] = None
    out = _Emitter(state, record)
    _advance(out, config)
    return out.done()


def _control_result(
    state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig
) -> Step:
    if state["state"] in TERMINAL:
        return Step(state)
    state["controlResult"] = record["result"]
    state["controlOffice"] = record["officeRole"]
    out = _Emitter(state, record)
    _advance(out, config)
    return out.done()


def _invalidation(state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig) -> Step:
    out = _Emitter(state, record)
    if state["state"] in TERMINAL:
        outcome = state["state"].lower().replace("_", " ")
        out.notify(
            "IE456",
            errors=[
                {
                    "code": "R095",
                    "pointer": "/mrn",
                    "message": f"the declaration is already {outcome}"
                    " and can no longer be invalidated",
                }
            ],
        )
        return out.done()
    out.event("declaration.invalidated", {"reason": record["reason"]})
    out.notify("IE410")
    _finish(out, INVALIDATED)
    return out.done()


def _tick(state: dict[str, Any], record: Mapping[str, Any], config: DecisionConfig) -> Step:
    if not state.get("accepted") or state["state"] in TERMINAL:
        return Step(None)
    now = millis(record["occurredAt"])
    out = _Emitter(state, record)
    fired = False
    # In deadline order: the COP answer (hours) is due before the lapse (days).
    for name in sorted(
        (n for n in ("copDeadline", "lapseDeadline") if state.get(n) is not None),
        key=lambda n: (state[n], n),
    ):
        if state[name] > now or state["state"] in TERMINAL:
            continue
        fired = True
        state[name] = None
        if name == "copDeadline":
            state["copControl"] = "NONE"
            state["copTimedOut"] = True
            _advance(out, config)
        else:
            out.event("declaration.not-released", {"reason": "LAPSED"})
            out.notify("IE451")
            _finish(out, NOT_RELEASED)
    if not fired:
        return Step(None)
    return out.done()


def _advance(out: _Emitter, config: DecisionConfig) -> None:
    """Take every step the state now allows: forward, announce the control, decide."""
    state = out.state
    if not state["accepted"] or state["state"] in TERMINAL:
        return
    if (
        state.get("forwardedAt") is None
        and state.get("scoControl") is not None
        and state.get("duties") is not None
    ):
        _forward(out, config)
    final = final_control(state) if state.get("forwardedAt") is not None else None
    if final is not None and final != "NONE" and not state.get("controlAnnounced"):
        state["controlAnnounced"] = True
        out.notify("IE460", control=final)
        out.move(UNDER_CONTROL)
    if state.get("controlResult") == "B1":
        out.event("declaration.not-released", {"reason": "CONTROL_NOT_SATISFACTORY"})
        out.notify("IE451")
        _finish(out, NOT_RELEASED)
        return
    if (
        final is not None
        and state["presented"]
        and (final == "NONE" or state.get("controlResult") == "A1")
    ):
        duties = state["duties"]
        out.event(
            "declaration.released",
            {
                "totalDuty": Decimal(duties["totalDuty"]),
                "totalVat": Decimal(duties["totalVat"]),
            },
        )
        out.notify("IE429")
        _finish(out, RELEASED)


def _forward(out: _Emitter, config: DecisionConfig) -> None:
    state = out.state
    duties = state["duties"]
    control = state["scoControl"]
    out.event(
        "cop.forwarded",
        {
            "presentationOffice": state["presentationOffice"],
            "instruction": "RELEASE_ALLOWED" if control == "NONE" else "CONTROL_REQUIRED",
            "control": control,
            "totalDuty": Decimal(duties["totalDuty"]),
            "totalVat": Decimal(duties["totalVat"]),
            "vatMemberState": duties["vatMemberState"],
            "declaration": kept_declaration(state["declaration"], config.schemas),
        },
        # One forward per declaration, whichever of acceptance, risk and duties came last.
        cause=f"{state['acceptedEventId']}|{state['mrn']}",
    )
    forwarded_at = millis(out.at)
    state["forwardedAt"] = forwarded_at
    # The forward is the last use of the declaration: keep the state small from here on.
    state["declaration"] = None
    if state.get("copControl") is None:
        state["copDeadline"] = forwarded_at + _ms(config.cop_response_timeout)
    out.move(FORWARDED)


def _finish(out: _Emitter, terminal: str) -> None:
    state = out.state
    state["copDeadline"] = None
    state["lapseDeadline"] = None
    out.move(terminal)


def _ms(duration: timedelta) -> int:
    return duration // _MS


_HANDLERS = {
    "declaration.accepted": _accepted,
    "risk.assessed": _risk,
    "duties.assessed": _duties,
    "cop.risk-result": _cop_risk,
    "cop.goods-presented": _presented,
    "control.result": _control_result,
    "invalidation.requested": _invalidation,
}
