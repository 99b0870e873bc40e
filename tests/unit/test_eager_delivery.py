"""The stages' consumer delivers each fetched message without a task unless the delivery has
to wait, and a delivery that waits still gives way to a suspension of the flow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from streams.app import LockedCommitConsumer, make_app
from streams.config import Settings


def consumer(tmp_path: Path) -> LockedCommitConsumer:
    settings = Settings(namespace="eager", store="memory://", state_dir=tmp_path, partitions=1)
    app = make_app("decision", settings)
    app.finalize()
    made = app.consumer
    assert isinstance(made, LockedCommitConsumer)
    return made


def test_a_delivery_that_does_not_wait_makes_no_task(tmp_path: Path) -> None:
    delivered: list[int] = []

    async def deliver(n: int) -> None:
        delivered.append(n)

    async def main() -> int:
        c = consumer(tmp_path)
        tasks_before = len(asyncio.all_tasks())
        made = 0
        for n in range(3):
            result = await c.wait_first(deliver(n), c.suspend_flow.wait())
            assert not result.stopped
            made = max(made, len(asyncio.all_tasks()) - tasks_before)
        return made

    assert asyncio.run(main()) == 0
    assert delivered == [0, 1, 2]


def test_a_delivery_that_waits_completes_as_before(tmp_path: Path) -> None:
    async def main() -> list[str]:
        c = consumer(tmp_path)
        room = asyncio.Event()
        steps: list[str] = []

        async def deliver() -> None:
            steps.append("waiting for room")
            await room.wait()
            steps.append("delivered")

        asyncio.get_running_loop().call_later(0.01, room.set)
        await c.wait_first(deliver(), c.suspend_flow.wait())
        return steps

    assert asyncio.run(main()) == ["waiting for room", "delivered"]


def test_a_delivery_that_waits_is_given_up_when_the_flow_is_suspended(tmp_path: Path) -> None:
    async def main() -> list[str]:
        c = consumer(tmp_path)
        steps: list[str] = []

        async def deliver() -> None:
            try:
                await asyncio.Event().wait()  # a buffer that never makes room
                steps.append("delivered")
            except asyncio.CancelledError:
                steps.append("given up")
                raise

        asyncio.get_running_loop().call_later(0.01, c.suspend_flow.set)
        result = await c.wait_first(deliver(), c.suspend_flow.wait())
        assert len(result.done) == 1  # the suspension
        await asyncio.sleep(0)  # the cancelled delivery runs its handler
        return steps

    assert asyncio.run(main()) == ["given up"]
