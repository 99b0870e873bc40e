"""`streams.app.admit`: when an input delivered by Faust's stream may be processed.

At a rebalance Faust ends the stage's transactions and begins new ones, then seeks to the
committed offsets; meanwhile its stream buffers keep delivering. An input then waits, and is
given up only when its partition has been revoked (Faust is waiting for it to be acknowledged)."""

from __future__ import annotations

import asyncio

from streams.app import admit


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_an_input_is_admitted_with_the_lock_held_while_inputs_are_open() -> None:
    async def case() -> tuple[bool, bool]:
        lock, gate = asyncio.Lock(), asyncio.Event()
        gate.set()
        admitted = await admit(lock, gate, lambda: True)
        return admitted, lock.locked()

    assert run(case()) == (True, True)


def test_an_input_waits_for_the_seek_then_is_admitted() -> None:
    async def case() -> tuple[bool, bool, bool]:
        lock, gate = asyncio.Lock(), asyncio.Event()
        waiting = asyncio.create_task(admit(lock, gate, lambda: True))
        await asyncio.sleep(0.05)
        still_waiting = not waiting.done()
        gate.set()
        return still_waiting, await waiting, lock.locked()

    assert run(case()) == (True, True, True)


def test_an_input_of_a_partition_revoked_while_it_waits_is_given_up_without_the_lock() -> None:
    async def case() -> tuple[bool, bool]:
        lock, gate = asyncio.Lock(), asyncio.Event()
        owned = [True]
        waiting = asyncio.create_task(admit(lock, gate, lambda: owned[0]))
        await asyncio.sleep(0.05)
        owned[0] = False  # the rebalance revokes its partition; the gate stays closed
        admitted = await asyncio.wait_for(waiting, 5)
        return admitted, lock.locked()

    assert run(case()) == (False, False)


def test_transactions_ended_while_waiting_for_the_lock_send_the_input_back_to_wait() -> None:
    async def case() -> tuple[bool, bool]:
        lock, gate = asyncio.Lock(), asyncio.Event()
        gate.set()
        await lock.acquire()  # the commit holds the lock...
        waiting = asyncio.create_task(admit(lock, gate, lambda: True))
        await asyncio.sleep(0.05)
        gate.clear()  # ...and ends the transactions (a rebalance) before it lets go
        lock.release()
        await asyncio.sleep(0.05)
        blocked = not waiting.done() and not lock.locked()
        gate.set()  # the new transactions are begun and the partitions seeked
        return blocked, await asyncio.wait_for(waiting, 5)

    assert run(case()) == (True, True)
