"""Changelog records held until the commit: one per key, its last value, nothing lost or left."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.table_writes import PendingChangelog, pending_changelog, send_pending


class Changelog:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any, int]] = []

    async def send(self, *, key: Any, value: Any, partition: int, callback: Any) -> None:
        assert callback is not None
        self.sent.append((key, value, partition))


def table(name: str) -> Any:
    return SimpleNamespace(name=name, changelog_topic=Changelog(), _on_changelog_sent=object())


def test_each_key_keeps_its_last_value_in_first_write_order() -> None:
    pending = PendingChangelog()
    sequences, declarations = table("sequences"), table("declarations")
    pending.add(sequences, 3, "3", 1)
    pending.add(declarations, 3, "EORI/A", {"mrn": "M1"})
    pending.add(sequences, 3, "3", 2)
    pending.add(sequences, 4, "4", 1)
    assert len(pending) == 3
    assert pending.take() == [
        (sequences, 3, "3", 2),
        (declarations, 3, "EORI/A", {"mrn": "M1"}),
        (sequences, 4, "4", 1),
    ]
    assert len(pending) == 0 and pending.take() == []


def test_the_same_key_on_two_partitions_is_two_records() -> None:
    pending = PendingChangelog()
    states = table("states")
    pending.add(states, 0, "k", "a")
    pending.add(states, 1, "k", "b")
    assert [(p, v) for _, p, _, v in pending.take()] == [(0, "a"), (1, "b")]


def test_sending_empties_the_pending_records_into_each_tables_changelog() -> None:
    app = SimpleNamespace()
    sequences, declarations = table("sequences"), table("declarations")
    for n in range(1, 41):  # forty acceptances on one partition: one sequence record
        pending_changelog(app).add(sequences, 2, "2", n)
        pending_changelog(app).add(declarations, 2, f"EORI/{n}", {"mrn": f"M{n}"})
    assert asyncio.run(send_pending(app)) == 41
    assert sequences.changelog_topic.sent == [("2", 40, 2)]
    assert len(declarations.changelog_topic.sent) == 40
    assert asyncio.run(send_pending(app)) == 0
    assert pending_changelog(app) is pending_changelog(app)
