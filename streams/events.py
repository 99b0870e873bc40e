"""Builders of output records shared by the stages.

Output event ids are derived (UUID v5) from the input that caused them: the same input gives the
same output byte for byte, so a replay into a fresh namespace can be compared whole and a
downstream consumer can deduplicate on `eventId`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.topics import event_key

_NAMESPACE = uuid.UUID("6f0e3d7c-5c1b-4f7e-9a57-2b1d0c4e8a10")


def derived_event_id(cause: str, logical: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{cause}|{logical}"))


@dataclass(frozen=True)
class Output:
    """One event to emit: logical name, Kafka key and Avro-native record."""

    logical: str
    key: bytes | None
    record: Mapping[str, Any]


def output(logical: str, record: Mapping[str, Any]) -> Output:
    return Output(logical, event_key(logical, record), record)


def notification(
    cause: str,
    occurred_at: datetime,
    message_code: str,
    lrn: str,
    declarant_eori: str,
    mrn: str | None = None,
    control: str | None = None,
    errors: list[dict[str, str]] | None = None,
) -> Output:
    return output(
        "trader.notification",
        {
            "eventId": derived_event_id(cause, f"trader.notification/{message_code}"),
            "occurredAt": occurred_at,
            "messageCode": message_code,
            "lrn": lrn,
            "mrn": mrn,
            "declarantEori": declarant_eori,
            "control": control,
            "errors": errors,
        },
    )


def dead_letter(
    stage: str,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp: datetime | None,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]],
) -> Output:
    """A dead-letter record keeping the original message whole, keyed like the original."""
    origin = f"{topic}/{partition}/{offset}"
    record = {
        "eventId": derived_event_id(origin, "dead-letter"),
        # Event time of a message we cannot read is the time the broker stamped on it.
        "occurredAt": timestamp or datetime.fromtimestamp(0, UTC),
        "stage": stage,
        "reason": reason,
        "error": error[:2000],
        "sourceTopic": topic,
        "sourcePartition": partition,
        "sourceOffset": offset,
        "sourceTimestamp": timestamp,
        "key": key,
        "value": value,
        "headers": [{"key": k, "value": v} for k, v in headers],
    }
    return Output("dead-letter", key, record)
