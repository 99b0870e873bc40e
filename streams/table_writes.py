"""Table writes whose changelog records wait for the commit of their transaction.

A stage writes its tables once per input, but a changelog only needs, for each key, the value
the key has when the transaction commits: the records of one transaction become visible
together or not at all, and a recovery keeps the last value of each key anyway. So a write
goes to the store at once, and its changelog record is sent just before the commit, once per
key and transaction instead of once per input. The intake's MRN sequence, one key per
partition written by every acceptance, is the case that pays most (docs/decisions.md,
Exactly-once, 12).

Each record still goes to the transaction of its own partition, as when it was sent at once:
flushing before any commit is therefore enough, whichever partitions that commit covers.
"""

from __future__ import annotations

from typing import Any


class PendingChangelog:
    """The latest value of each key written since the last commit, by table and partition,
    in the order the keys were first written."""

    def __init__(self) -> None:
        self._tables: dict[str, Any] = {}
        self._latest: dict[tuple[str, int], dict[Any, Any]] = {}

    def __len__(self) -> int:
        return sum(len(values) for values in self._latest.values())

    def add(self, table: Any, partition: int, key: Any, value: Any) -> None:
        self._tables[table.name] = table
        self._latest.setdefault((table.name, partition), {})[key] = value

    def take(self) -> list[tuple[Any, int, Any, Any]]:
        """Every pending record, as (table, partition, key, value); none are left pending."""
        records = [
            (self._tables[name], partition, key, value)
            for (name, partition), values in self._latest.items()
            for key, value in values.items()
        ]
        self._latest.clear()
        return records


def pending_changelog(app: Any) -> PendingChangelog:
    """The worker's pending changelog records: one per app, shared by the stage that writes
    them and the consumer that commits."""
    pending: PendingChangelog | None = app.__dict__.get("_cci_pending_changelog")
    if pending is None:
        pending = app.__dict__["_cci_pending_changelog"] = PendingChangelog()
    return pending


async def send_pending(app: Any) -> int:
    """Send the pending changelog records into their transactions; how many were sent."""
    records = pending_changelog(app).take()
    for table, partition, key, value in records:
        await table.changelog_topic.send(
            key=key,
            value=value,
            partition=partition,
            # Keeps the RocksDB store's record of which changelog offsets it holds.
            callback=table._on_changelog_sent,
        )
    return len(records)
