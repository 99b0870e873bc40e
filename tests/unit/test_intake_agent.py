"""The intake agent driven through Faust's test_context (memory tables, no broker): what each
kind of message becomes, as the stage emits it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streams.app import make_app, make_context
from streams.codec import catalogue
from streams.config import Settings
from streams.events import Output
from streams.generator import generate
from streams.jsonform import from_json
from streams.reference import load_reference
from streams.stages import intake
from streams.topics import event_key

Driver = Callable[[list[tuple[bytes | None, bytes]]], list[Output]]


@pytest.fixture
def run_intake(tmp_path: Path) -> Driver:
    """Feed (key, value) messages to a fresh intake agent; return everything it emitted."""

    def run(messages: list[tuple[bytes | None, bytes]]) -> list[Output]:
        settings = Settings(namespace="unit", store="memory://", state_dir=tmp_path, partitions=1)
        app = make_app("intake", settings)
        app.finalize()
        app.flow_control.resume()
        ctx = make_context("intake", settings, app)
        emitted: list[Output] = []

        async def record(outputs: Any, headers: Any = None, embedded: Any = None) -> None:
            emitted.extend(outputs)

        ctx.emit = record  # type: ignore[method-assign]
        agent = intake.build(ctx)

        async def drive() -> None:
            async with agent.test_context() as test_agent:
                for key, value in messages:  # offsets count from 0, as on a fresh topic
                    await test_agent.put(value, key=key, partition=0)

        asyncio.run(drive())
        return emitted

    return run


def lodged(seed: int, invalid_share: float = 0.0) -> tuple[bytes | None, bytes]:
    schemas = catalogue(Settings().schemas_dir)
    schema = schemas.latest("declaration.lodged").schema
    [declaration] = generate(1, invalid_share, seed, load_reference())
    record = from_json(schema, declaration)
    return event_key("declaration.lodged", record), schemas.encode("declaration.lodged", record)


def kinds(outputs: list[Output]) -> list[str]:
    return [
        f"{o.logical}/{o.record['messageCode']}"
        if o.logical == "trader.notification"
        else o.logical
        for o in outputs
    ]


def test_a_valid_declaration_is_accepted_with_an_mrn_and_an_ie428(run_intake: Driver) -> None:
    out = run_intake([lodged(1)])
    assert kinds(out) == ["declaration.accepted", "trader.notification/IE428"]
    accepted, ie428 = out
    assert accepted.key == accepted.record["mrn"].encode()
    assert ie428.record["mrn"] == accepted.record["mrn"]
    assert ie428.key == accepted.record["declarantEori"].encode()


def test_an_invalid_declaration_is_rejected_with_its_rules_and_an_ie456(run_intake: Driver) -> None:
    out = run_intake([lodged(2, invalid_share=1.0)])
    assert kinds(out) == ["declaration.rejected", "trader.notification/IE456"]
    rejected, ie456 = out
    assert rejected.record["errors"] and ie456.record["errors"] == rejected.record["errors"]
    assert ie456.record["mrn"] is None


def test_redelivery_gives_nothing_and_mrns_advance_per_acceptance(run_intake: Driver) -> None:
    first, second = lodged(3), lodged(4)
    out = run_intake([first, first, second])
    assert kinds(out) == ["declaration.accepted", "trader.notification/IE428"] * 2
    mrns = [o.record["mrn"] for o in out if o.logical == "declaration.accepted"]
    assert len(set(mrns)) == 2


def test_bytes_that_do_not_decode_go_to_the_dead_letter_topic_whole(run_intake: Driver) -> None:
    out = run_intake([(b"k1", b"\x00garbage"), (None, b"")])
    assert kinds(out) == ["dead-letter", "dead-letter"]
    first = out[0].record
    assert (first["key"], first["value"], first["stage"]) == (b"k1", b"\x00garbage", "intake")
    assert first["reason"] == "not-single-object-encoding"
    assert (first["sourcePartition"], first["sourceOffset"]) == (0, 0)
    assert out[1].record["sourceOffset"] == 1


def test_a_wrongly_keyed_declaration_is_a_dead_letter_not_a_decision(run_intake: Driver) -> None:
    _, value = lodged(5)
    out = run_intake([(b"somebody-else/LRN", value), lodged(6)])
    assert kinds(out) == ["dead-letter", "declaration.accepted", "trader.notification/IE428"]
    assert out[0].record["reason"] == "key-mismatch"


def test_the_stage_keeps_running_after_a_processing_error(
    run_intake: Driver, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = intake.lodge  # type: ignore[attr-defined]

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(intake, "lodge", flaky)
    out = run_intake([lodged(7), lodged(8)])
    assert kinds(out) == ["dead-letter", "declaration.accepted", "trader.notification/IE428"]
    assert out[0].record["reason"] == "processing-error"
