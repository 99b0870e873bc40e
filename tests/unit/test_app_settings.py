"""The Faust settings a stage runs with, where they differ from the shared client settings."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from streams.app import make_app
from streams.config import Settings
from streams.faust_settings import client_settings


def test_a_stage_lingers_until_its_commit_and_other_apps_do_not() -> None:
    # A stage's outputs are visible at its commit only, which flushes what lingers: lingering
    # until then costs no latency. An app without transactions has no commit to flush it.
    settings = Settings(namespace="ns", commit_interval=0.25, store="memory://")
    assert make_app("risk", settings).conf.producer_linger == 0.25
    assert client_settings(settings, "ns-bench-alo")["producer_linger"] == 0.005


def _worker_consumer(settings: Settings) -> Any:
    app = make_app("intake", settings)
    thread = cast(Any, app.consumer)._new_consumer_thread()
    return thread._create_worker_consumer(app.transport)


def test_a_stage_s_fetches_wait_as_its_settings_say() -> None:
    # A broker holds a fetch until it has the bytes asked for or the wait is over: the fewer
    # the fetches, the less each worker and the broker spend per input (docs/capacity.md).
    async def built() -> tuple[Any, Any]:
        tuned = Settings(namespace="ns", fetch_min_bytes=65536, fetch_max_wait=0.02)
        return _worker_consumer(tuned), _worker_consumer(Settings(namespace="ns"))

    tuned, default = asyncio.run(built())
    assert (tuned._fetch_min_bytes, tuned._fetch_max_wait_ms) == (65536, 20)
    # Untuned, what Faust has always asked for: any byte, held up to 1.5 s.
    assert (default._fetch_min_bytes, default._fetch_max_wait_ms) == (1, 1500)


class Transaction:
    """A transactional producer that takes a round trip for each request of a commit."""

    def __init__(self, name: str, log: list[tuple[str, str]]) -> None:
        self.name, self.log = name, log

    async def _request(self, what: str) -> None:
        self.log.append((what, self.name))
        await asyncio.sleep(0.01)

    async def send_offsets_to_transaction(self, offsets: Any, group_id: str) -> None:
        await self._request(f"offsets {dict(offsets)} for {group_id}")

    async def commit_transaction(self) -> None:
        await self._request("end")

    async def begin_transaction(self) -> None:
        self.log.append(("begin", self.name))


def test_a_commit_ends_the_transactions_of_its_partitions_at_once() -> None:
    # Each input partition has its own transaction; ended one after the other, a commit held
    # the stage's inputs back for the round trips of every one of them.
    log: list[tuple[str, str]] = []

    async def commit() -> None:
        app = make_app("decision", Settings(namespace="ns", store="memory://"))
        producer = cast(Any, app.producer)
        producer._transaction_producers = {t: Transaction(t, log) for t in ("t-0", "t-1")}
        producer._trn_locks = {t: asyncio.Lock() for t in ("t-0", "t-1")}
        await producer.commit_transactions({"t-0": {"tp0": 5}, "t-1": {"tp1": 7}}, "group")

    asyncio.run(commit())
    assert log[:2] == [
        ("offsets {'tp0': 5} for group", "t-0"),
        ("offsets {'tp1': 7} for group", "t-1"),
    ]
    assert log[2:4] == [("end", "t-0"), ("end", "t-1")]
    assert sorted(log[4:]) == [("begin", "t-0"), ("begin", "t-1")]
