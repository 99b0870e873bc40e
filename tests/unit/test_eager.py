"""A coroutine started eagerly runs in its caller up to its first suspension, and the rest of
it, awaited or made a task, behaves as the whole coroutine run by a task would."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.eager import start_eagerly


def test_a_coroutine_that_never_waits_is_finished_in_the_caller() -> None:
    done: list[str] = []
    lock = asyncio.Lock()  # free: acquiring it does not wait

    async def deliver() -> str:
        async with lock:
            done.append("delivered")
        return "result"

    async def main() -> Any:
        return start_eagerly(deliver())

    assert asyncio.run(main()) is None
    assert done == ["delivered"]


def test_what_it_raises_before_waiting_is_raised_in_the_caller() -> None:
    async def fail() -> None:
        raise ValueError("bad message")

    with pytest.raises(ValueError, match="bad message"):
        asyncio.run(_start(fail()))


async def _start(coro: Any) -> Any:
    return start_eagerly(coro)


def test_a_coroutine_that_waits_is_finished_by_a_task_with_its_result() -> None:
    steps: list[str] = []

    async def deliver(gate: asyncio.Event) -> str:
        steps.append("before")
        await gate.wait()
        steps.append("after")
        await asyncio.sleep(0)  # a bare yield to the loop
        return "result"

    async def main() -> str:
        gate = asyncio.Event()
        rest = start_eagerly(deliver(gate))
        assert rest is not None and steps == ["before"]
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        assert not task.done()
        gate.set()
        result: str = await task
        return result

    assert asyncio.run(main()) == "result"
    assert steps == ["before", "after"]


def test_what_it_raises_after_waiting_is_the_tasks_exception() -> None:
    async def deliver(ready: asyncio.Future[int]) -> int:
        value = await ready
        raise RuntimeError(f"failed on {value}")

    async def main() -> None:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        rest = start_eagerly(deliver(ready))
        assert rest is not None
        task = asyncio.ensure_future(rest)
        ready.set_result(7)
        with pytest.raises(RuntimeError, match="failed on 7"):
            await task

    asyncio.run(main())


def test_cancelling_the_task_cancels_the_coroutine_where_it_waits() -> None:
    cleaned: list[str] = []

    async def deliver(gate: asyncio.Event) -> None:
        try:
            await gate.wait()
        finally:
            cleaned.append("cleaned up")

    async def main() -> None:
        gate = asyncio.Event()
        rest = start_eagerly(deliver(gate))
        assert rest is not None
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # The event's waiter was cancelled with it: setting the event later wakes nothing.
        gate.set()
        await asyncio.sleep(0)

    asyncio.run(main())
    assert cleaned == ["cleaned up"]


def test_a_coroutine_can_catch_the_cancellation_and_finish() -> None:
    async def deliver(gate: asyncio.Event) -> str:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            return "given up"
        return "delivered"

    async def main() -> str:
        rest = start_eagerly(deliver(asyncio.Event()))
        assert rest is not None
        task = asyncio.ensure_future(rest)
        await asyncio.sleep(0)
        task.cancel()
        result: str = await task
        return result

    assert asyncio.run(main()) == "given up"


def test_closing_the_rest_unfinished_closes_the_coroutine() -> None:
    cleaned: list[str] = []

    async def deliver(gate: asyncio.Event) -> None:
        try:
            await gate.wait()
        finally:
            cleaned.append("closed")

    async def main() -> None:
        rest = start_eagerly(deliver(asyncio.Event()))
        assert rest is not None
        awaiting = rest.__await__()
        next(awaiting)  # up to the suspension, as a task would
        awaiting.close()
        rest.close()

    asyncio.run(main())
    assert cleaned == ["closed"]
