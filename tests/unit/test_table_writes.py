"""Table writes: serialised once, stored as those bytes, and their changelog records held until
the commit: one per key, its last value, nothing lost or left."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any
from unittest.mock import MagicMock

import faust
from faust.stores.base import SerializedStore

from streams.table_writes import (
    PendingChangelog,
    pending_changelog,
    send_pending,
    store,
    table_read,
    table_write,
)


class Transactions:
    """What `send_pending` uses of Faust's transaction manager: `send`, which answers with the
    producer's future of the record's metadata."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
    ) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, partition))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.futures.append(future)
        return future


class Table:
    def __init__(self, name: str) -> None:
        self.name = name
        self.changelog_topic = SimpleNamespace(get_topic_name=lambda: f"{name}-changelog")
        self.persisted: list[Any] = []
        self.data: Any = {}

    def _on_changelog_sent(self, sent: asyncio.Future[Any]) -> None:
        self.persisted.append(sent.result())


def test_a_write_is_serialised_once_as_the_tables_json() -> None:
    states = Table("states")
    made = table_write(
        states, "25FR0000000000001", {"state": "ACCEPTED", "history": [["ACCEPTED", 1]]}
    )
    assert json.loads(made.key_bytes) == "25FR0000000000001"
    assert json.loads(made.value_bytes) == {"state": "ACCEPTED", "history": [["ACCEPTED", 1]]}
    assert made.table is states


def test_each_key_keeps_its_last_write_in_first_write_order() -> None:
    pending = PendingChangelog()
    sequences, declarations = Table("sequences"), Table("declarations")
    pending.add(table_write(sequences, "3", 1), 3)
    pending.add(table_write(declarations, "EORI/A", {"mrn": "M1"}), 3)
    pending.add(table_write(sequences, "3", 2), 3)
    pending.add(table_write(sequences, "4", 1), 4)
    assert len(pending) == 3
    assert [(w.table.name, p, w.key, w.value) for w, p in pending.take()] == [
        ("sequences", 3, "3", 2),
        ("declarations", 3, "EORI/A", {"mrn": "M1"}),
        ("sequences", 4, "4", 1),
    ]
    assert len(pending) == 0 and pending.take() == []


def test_the_same_key_on_two_partitions_is_two_records() -> None:
    pending = PendingChangelog()
    states = Table("states")
    pending.add(table_write(states, "k", "a"), 0)
    pending.add(table_write(states, "k", "b"), 1)
    assert [(p, w.value) for w, p in pending.take()] == [(0, "a"), (1, "b")]


def test_sending_puts_the_written_bytes_into_each_changelog_and_records_what_was_persisted() -> (
    None
):
    transactions = Transactions()
    app = SimpleNamespace(consumer=SimpleNamespace(transactions=transactions))
    sequences, declarations = Table("sequences"), Table("declarations")
    writes = []
    for n in range(1, 41):  # forty acceptances on one partition: one sequence record
        pending_changelog(app).add(table_write(sequences, "2", n), 2)
        writes.append(table_write(declarations, f"EORI/{n}", {"mrn": f"M{n}"}))
        pending_changelog(app).add(writes[-1], 2)

    async def send_and_acknowledge() -> int:
        count = await send_pending(app)
        for offset, future in enumerate(transactions.futures):
            if offset == 1:
                future.set_exception(RuntimeError("not acknowledged"))
            else:
                future.set_result(("metadata", offset))
        await asyncio.sleep(0)  # the done callbacks run
        return count

    assert asyncio.run(send_and_acknowledge()) == 41
    assert transactions.sent[0] == ("sequences-changelog", b'"2"', b"40", 2)
    assert transactions.sent[1:] == [
        ("declarations-changelog", w.key_bytes, w.value_bytes, 2) for w in writes
    ]
    # A record the broker did not acknowledge is not recorded as persisted: its transaction
    # fails to commit.
    assert sequences.persisted == [("metadata", 0)]
    assert declarations.persisted == [("metadata", n) for n in range(2, 41)]
    assert asyncio.run(send_pending(app)) == 0
    assert pending_changelog(app) is pending_changelog(app)


def test_a_serialising_store_gets_the_bytes_and_the_memory_store_the_value() -> None:
    rocks, memory = Table("rocks"), Table("memory")
    rocks.data = MagicMock(spec=SerializedStore)  # as RocksDB's store is
    made = table_write(rocks, "k", {"a": 1})
    store(made)
    rocks.data._set.assert_called_once_with(made.key_bytes, made.value_bytes)
    store(table_write(memory, "k", {"a": 1}))
    assert memory.data == {"k": {"a": 1}}


class BytesStore(SerializedStore[str, Any]):
    """A serialising store over a dict of bytes, as the RocksDB store is over its database:
    Faust's own `SerializedStore` turns keys and values into the bytes it keeps."""

    def __init__(self, app: Any, table: Any) -> None:
        super().__init__(
            "bytes://",
            app,
            table,
            key_type=str,
            value_type=None,
            key_serializer="json",
            value_serializer="json",
        )
        self.kept: dict[bytes, bytes | None] = {}
        self.gets = 0

    def _get(self, key: bytes) -> bytes | None:
        self.gets += 1
        return self.kept.get(key)

    def _set(self, key: bytes, value: bytes | None) -> None:
        self.kept[key] = value

    def _del(self, key: bytes) -> None:
        self.kept.pop(key, None)

    def _iterkeys(self) -> Any:
        return iter(self.kept)

    def _itervalues(self) -> Any:
        return iter(self.kept.values())

    def _iteritems(self) -> Any:
        return iter(self.kept.items())

    def _size(self) -> int:
        return len(self.kept)

    def _contains(self, key: bytes) -> bool:
        self.gets += 1
        return key in self.kept

    def _clear(self) -> None:
        self.kept.clear()

    def reset_state(self) -> None:
        self.kept.clear()

    async def backup_partition(
        self, tp: Any, flush: bool = True, purge: bool = False, keep: int = 1
    ) -> None:
        raise NotImplementedError

    def restore_backup(self, tp: Any, latest: bool = True, backup_id: int = 0) -> None:
        raise NotImplementedError


def test_a_read_finds_what_faust_wrote_and_faust_reads_what_a_write_stored() -> None:
    states = Table("states")
    states.data = BytesStore(faust.App("cci-test-table-read"), states)
    faust_written = {"mrn": "25FR0000000000001", "state": "RELEASED", "history": [["X", 1]]}
    states.data["25FR0000000000001"] = faust_written  # Faust's own serialisation
    assert table_read(states, "25FR0000000000001") == faust_written
    assert states.data.gets == 1  # one lookup, where `Table.get` makes two
    store(table_write(states, "EORI/LRN-é", {"mrn": "M2", "amount": "1.50"}))
    assert states.data["EORI/LRN-é"] == {"mrn": "M2", "amount": "1.50"}
    assert table_read(states, "EORI/LRN-é") == {"mrn": "M2", "amount": "1.50"}
    assert table_read(states, "unknown") is None


def test_a_read_of_the_memory_store_is_its_value() -> None:
    states = Table("states")
    states.data = {"k": {"a": 1}}
    assert table_read(states, "k") == {"a": 1}
    assert table_read(states, "missing") is None
