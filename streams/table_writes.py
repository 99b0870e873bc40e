"""Table reads and writes of the stages, and changelog records that wait for the commit of
their transaction.

A stage writes its tables once per input, but a changelog only needs, for each key, the value
the key has when the transaction commits: the records of one transaction become visible
together or not at all, and a recovery keeps the last value of each key anyway. So a write
goes to the store at once, and its changelog record is sent just before the commit, once per
key and transaction instead of once per input. The intake's MRN sequence, one key per
partition written by every acceptance, is the case that pays most (docs/decisions.md,
Exactly-once, 12).

Each record still goes to the transaction of its own partition, as when it was sent at once:
flushing before any commit is therefore enough, whichever partitions that commit covers.

A read asks the store once, with the key serialised as a write serialises it: `Table.get`
asks the RocksDB store twice (whether the key is there, then its value), serialising the key
through Faust's codec registry each time, which the intake, with two reads per declaration,
paid about 7 % of its time for (docs/capacity.md, Eighth round).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from functools import partial
from typing import Any

from faust.stores.base import SerializedStore
from faust.utils import json as faust_json


@dataclass(frozen=True)
class TableWrite:
    """One table record serialised once: its size is checked, and the store and the changelog
    get these very bytes. The stage's tables are JSON (`StageContext.table`); a decision state
    is about a kilobyte, and serialising it three times, and sending it through Faust's
    `Topic.send`, cost the loaded decision stage a tenth of its time (docs/capacity.md,
    Seventh round)."""

    table: Any
    key: Any
    value: Any
    key_bytes: bytes
    value_bytes: bytes


def json_bytes(value: Any) -> bytes:
    """`value` as the stage's tables serialise it: Faust's JSON codec, whose text is that of
    Faust's own `json.dumps` (the standard library's, or orjson's when installed), without the
    codec registry's lookups around it."""
    text: str | bytes = faust_json.dumps(value)
    return text.encode() if isinstance(text, str) else text


def table_write(table: Any, key: Any, value: Any) -> TableWrite:
    return TableWrite(table, key, value, json_bytes(key), json_bytes(value))


def table_read(table: Any, key: Any) -> Any:
    """`table.get(key)`, None when the key has no value, with one lookup in the store."""
    data = table.data
    if isinstance(data, SerializedStore):  # RocksDB: bytes, serialised as `table_write` does
        raw = data._get(json_bytes(key))
        return None if raw is None else json.loads(raw)  # any JSON reader reads it alike
    return data.get(key)  # the memory store keeps the value itself


def store(write: TableWrite) -> None:
    """Write `write` to its table's store, as `table.data[key] = value` would."""
    data = write.table.data
    if isinstance(data, SerializedStore):  # RocksDB: keeps bytes, serialised already
        data._set(write.key_bytes, write.value_bytes)
    else:  # the memory store keeps the value itself
        data[write.key] = write.value


class PendingChangelog:
    """The latest write of each key since the last commit, by table and partition, in the
    order the keys were first written."""

    def __init__(self) -> None:
        self._latest: dict[tuple[str, int], dict[bytes, TableWrite]] = {}

    def __len__(self) -> int:
        return sum(len(writes) for writes in self._latest.values())

    def add(self, write: TableWrite, partition: int) -> None:
        self._latest.setdefault((write.table.name, partition), {})[write.key_bytes] = write

    def take(self) -> list[tuple[TableWrite, int]]:
        """Every pending write with its partition; none are left pending."""
        records = [
            (write, partition)
            for (_, partition), writes in self._latest.items()
            for write in writes.values()
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
    """Send the pending changelog records into their transactions; how many were sent.

    Straight to the transactions, which route a changelog record to the transaction of its
    partition as Faust's `Topic.send` ends up doing, without the pending message, the
    serialisation and the sensors around it."""
    records = pending_changelog(app).take()
    if not records:
        return 0
    transactions = app.consumer.transactions
    for write, partition in records:
        table = write.table
        sent = await transactions.send(
            table.changelog_topic.get_topic_name(),
            write.key_bytes,
            write.value_bytes,
            partition,
            None,
            None,
        )
        # Keeps the RocksDB store's record of which changelog offsets it holds, as Faust's
        # own send does once the record is acknowledged.
        sent.add_done_callback(partial(_persisted, table))
    return len(records)


def _persisted(table: Any, sent: asyncio.Future[Any]) -> None:
    # A failed send fails the transaction's commit, which restarts the worker.
    if not sent.cancelled() and sent.exception() is None:
        table._on_changelog_sent(sent)
