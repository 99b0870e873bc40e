"""Builders of output records shared by the stages.

Output event ids are derived (UUID v5) from the input that caused them: the same input gives the
same output byte for byte, so a replay into a fresh namespace can be compared whole and a
downstream consumer can deduplicate on `eventId`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streams.topics import event_key

_NAMESPACE = uuid.UUID("6f0e3d7c-5c1b-4f7e-9a57-2b1d0c4e8a10")


_NAMESPACE_BYTES = _NAMESPACE.bytes


def derived_event_id(cause: str, logical: str) -> str:
    """`str(uuid.uuid5(_NAMESPACE, f"{cause}|{logical}"))`, written out: the decision stage
    derives six ids per acceptance, and `uuid.UUID`'s checks and integer arithmetic were
    three quarters of their cost (docs/capacity.md, Eighth round)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{cause}|{logical}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # the RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass(frozen=True)
class Output:
    """One event to emit: logical name, Kafka key and Avro-native record."""

    logical: str
    key: bytes | None
    record: Mapping[str, Any]


def output(logical: str, record: Mapping[str, Any]) -> Output:
    return Output(logical, event_key(logical, record), record)


def assessment(logical: str, accepted: Mapping[str, Any], fields: Mapping[str, Any]) -> Output:
    """The `risk.assessed` or `duties.assessed` event (`logical`) of an acceptance, whichever
    stage assesses it: its eventId derives from the acceptance's, and it carries the
    acceptance's event time (spec §8)."""
    record = {
        "eventId": derived_event_id(accepted["eventId"], logical),
        "occurredAt": accepted["occurredAt"],
        "mrn": accepted["mrn"],
        **fields,
    }
    return output(logical, record)


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


Headers = list[tuple[str, bytes | None]]

# What a dead letter keeps of an original too big to keep whole: the key and each header cut
# to these sizes, at most this many headers, and as much of the value as the rest leaves room for.
_KEPT_KEY = 1024
_KEPT_HEADER = 1024
_KEPT_HEADERS = 64
_HEADER_FRAMING = 16  # length prefixes and union index of one header, generously


def _original_size(key: bytes | None, value: bytes | None, headers: Headers) -> int:
    # Key and headers count twice: the dead letter keeps them in its record and on its message.
    framed = sum(len(n.encode()) + len(v or b"") + _HEADER_FRAMING for n, v in headers)
    return 2 * (len(key or b"") + framed) + len(value or b"")


def fit_original(
    key: bytes | None, value: bytes | None, headers: Headers, budget: int
) -> tuple[bytes | None, bytes | None, Headers, str | None]:
    """The original key, value and headers as a dead letter can carry them in `budget` bytes,
    and a note when they had to be cut (None when they are whole).

    Spec §11 wants the original kept whole, and it is whenever it fits; a message at the
    broker's size limit, or bigger once decompressed, cannot fit in a dead letter that adds to
    it. Its beginning is kept with its size and SHA-256, and the source offset still holds the
    whole until the topic's retention removes it."""
    if _original_size(key, value, headers) <= budget:
        return key, value, headers, None
    kept_key = None if key is None else key[:_KEPT_KEY]
    kept_headers = [
        (n[:_KEPT_HEADER], None if v is None else v[:_KEPT_HEADER])
        for n, v in headers[:_KEPT_HEADERS]
    ]
    room = max(0, budget - _original_size(kept_key, b"", kept_headers))
    kept_value = None if value is None else value[:room]
    digest = hashlib.sha256(value or b"").hexdigest()
    note = (
        f"original too big to keep whole, cut: key {len(key or b'')} bytes, value "
        f"{len(value or b'')} bytes (SHA-256 {digest}), {len(headers)} headers"
    )
    return kept_key, kept_value, kept_headers, note
