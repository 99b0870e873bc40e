"""The intake stage on the real broker: what a lodged message becomes, and what survives a crash."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from streams.codec import SchemaCatalogue
from streams.config import Settings
from streams.generator import generate
from streams.jsonform import from_json
from streams.kafka_io import end_offsets, producer, publish_records
from streams.mrn import is_valid
from streams.reference import load_reference
from streams.topics import topic_name
from tests.integration.conftest import collect

pytestmark = pytest.mark.integration

OUTCOMES = ["declaration.accepted", "declaration.rejected", "dead-letter"]


def declarations(
    schemas: SchemaCatalogue, count: int, invalid_share: float, seed: int
) -> list[dict[str, Any]]:
    schema = schemas.latest("declaration.lodged").schema
    reference = load_reference()
    return [from_json(schema, d) for d in generate(count, invalid_share, seed, reference)]


def test_valid_invalid_and_garbage_end_as_accepted_rejected_and_dead_letters(
    settings: Settings, schemas: SchemaCatalogue, workers: Any
) -> None:
    valid = declarations(schemas, 20, 0.0, seed=11)
    invalid = declarations(schemas, 5, 1.0, seed=12)
    publish_records(settings, schemas, "declaration.lodged", valid + invalid)
    garbage = [b"", b"\x00not avro at all", schemas.latest("declaration.lodged").header + b"\x01"]
    client = producer(settings)
    lodged = topic_name(settings.namespace, "declaration.lodged")
    for i, value in enumerate(garbage):
        client.produce(lodged, key=f"junk-{i}".encode(), value=value, headers=[("origin", b"gw")])
    client.flush(10)
    workers("intake")

    out = collect(settings, schemas, [*OUTCOMES, "trader.notification"], until=20 + 5 + 3 + 25)

    accepted = {r["lrn"] for r in out["declaration.accepted"]}
    rejected = {r["lrn"] for r in out["declaration.rejected"]}
    assert accepted == {d["lrn"] for d in valid}
    assert rejected == {d["lrn"] for d in invalid}
    assert all(r["errors"] for r in out["declaration.rejected"])
    assert all(is_valid(r["mrn"]) for r in out["declaration.accepted"])
    codes = Counter(n["messageCode"] for n in out["trader.notification"])
    assert codes == {"IE428": 20, "IE456": 5}

    dead = sorted(out["dead-letter"], key=lambda r: r["sourceOffset"])
    assert len(dead) == 3
    assert {r["value"] for r in dead} == set(garbage)
    for record in dead:
        kafka = record["_kafka"]
        assert record["stage"] == "intake"
        assert record["sourceTopic"] == lodged
        assert record["key"] == kafka.key and record["key"].startswith(b"junk-")
        assert {"key": "origin", "value": b"gw"} in record["headers"]
        assert ("origin", b"gw") in kafka.headers
    assert {r["reason"] for r in dead} == {"not-single-object-encoding", "malformed-body"}


def test_a_redelivered_event_gives_nothing_new_and_a_relodged_lrn_is_refused(
    settings: Settings, schemas: SchemaCatalogue, workers: Any
) -> None:
    [original] = declarations(schemas, 1, 0.0, seed=21)
    relodged = {**original, "eventId": "00000000-0000-4000-8000-000000000001"}
    publish_records(settings, schemas, "declaration.lodged", [original, original, relodged])
    workers("intake")

    out = collect(settings, schemas, [*OUTCOMES, "trader.notification"], until=4)
    time.sleep(3)  # room for a wrong extra output to show up
    out = collect(settings, schemas, [*OUTCOMES, "trader.notification"], until=4)

    assert [r["lrn"] for r in out["declaration.accepted"]] == [original["lrn"]]
    [rejection] = out["declaration.rejected"]
    assert [(e["code"], e["pointer"]) for e in rejection["errors"]] == [("R090", "/lrn")]
    assert sorted(n["messageCode"] for n in out["trader.notification"]) == ["IE428", "IE456"]
    assert out["dead-letter"] == []


def test_a_stage_that_has_read_everything_commits_without_waiting_for_the_interval(
    settings: Settings, schemas: SchemaCatalogue, workers: Any
) -> None:
    # A commit interval far longer than the test: only the idle commit can make the outputs
    # visible to a read_committed reader in time.
    workers("intake", env={"CCI_COMMIT_INTERVAL": "600", "CCI_IDLE_COMMIT": "0.05"})
    load = declarations(schemas, 5, 0.0, seed=41)
    publish_records(settings, schemas, "declaration.lodged", load)

    out = collect(settings, schemas, ["declaration.accepted"], until=5, timeout=30)

    assert sorted(r["lrn"] for r in out["declaration.accepted"]) == sorted(d["lrn"] for d in load)


@pytest.mark.parametrize(
    ("interruption", "idle_commit"), [("stop", "0"), ("kill", "0"), ("kill", "0.05")]
)
def test_nothing_is_lost_or_duplicated_across_a_restart_mid_flow(
    settings: Settings,
    schemas: SchemaCatalogue,
    workers: Any,
    interruption: str,
    idle_commit: str,
) -> None:
    load = declarations(schemas, 3000, 0.1, seed=31)
    publish_records(settings, schemas, "declaration.lodged", load)
    env = {"CCI_IDLE_COMMIT": idle_commit}
    first = workers("intake", env)
    # Kill once part of the load has been written out, so the restart has work on both sides.
    outputs = [topic_name(settings.namespace, lg) for lg in OUTCOMES[:2]]
    deadline = time.monotonic() + 90
    written = 0
    while written < 300 and time.monotonic() < deadline:
        written = sum(end_offsets(settings, outputs).values())
        time.sleep(0.05)
    assert 300 <= written < 3000, f"{written} outcome records when the worker was killed"
    first.kill() if interruption == "kill" else first.stop()
    workers("intake", env)

    out = collect(settings, schemas, OUTCOMES, until=3000, timeout=120)

    lrns = Counter(r["lrn"] for r in out["declaration.accepted"] + out["declaration.rejected"])
    missing = {d["lrn"] for d in load} - set(lrns)
    twice = {lrn for lrn, n in lrns.items() if n > 1}
    assert not missing, (
        f"{len(missing)} declarations without an outcome, e.g. {sorted(missing)[:3]}; "
        f"{sum(lrns.values())} outcomes, {len(twice)} declarations with two"
    )
    assert not twice, f"{len(twice)} declarations with two outcomes, e.g. {sorted(twice)[:3]}"
    mrns = [r["mrn"] for r in out["declaration.accepted"]]
    assert len(set(mrns)) == len(mrns)
    assert out["dead-letter"] == []
