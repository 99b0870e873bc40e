"""Run a coroutine up to its first suspension before giving it a task, as Python 3.12's eager
tasks do, for the one path where Faust makes tasks per input message.

Faust's fetcher hands every message to the streams inside `Service.wait_first(delivery,
suspend_flow.wait())`: four tasks made and three cancelled per message, so that a delivery
blocked on a full buffer or a paused flow can be given up at a rebalance. A delivery nearly
always finishes without waiting; started eagerly, it needs no task and no race, and one that
does wait races as before (docs/decisions.md, Exactly-once, 17).
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


class _Rest:
    """The rest of a coroutine that already ran up to a suspension, as an awaitable: what
    awaits it (a task) gets the object the coroutine suspended on, as if it had run it from
    the start."""

    def __init__(self, coro: Coroutine[Any, Any, Any], suspended_on: Any) -> None:
        self._coro = coro
        self._suspended_on = suspended_on

    def __await__(self) -> Generator[Any, None, Any]:
        coro, suspended_on = self._coro, self._suspended_on
        while True:
            thrown: BaseException | None = None
            try:
                yield suspended_on
            except GeneratorExit:  # closed unfinished: the coroutine is closed with it
                coro.close()
                raise
            except BaseException as exc:  # thrown in by the task: a cancellation, mostly
                thrown = exc
            try:
                suspended_on = coro.send(None) if thrown is None else coro.throw(thrown)
            except StopIteration as done:
                return done.value


async def _finish(rest: _Rest) -> Any:
    return await rest


def start_eagerly(coro: Coroutine[Any, Any, Any]) -> Coroutine[Any, Any, Any] | None:
    """Run `coro` in the caller up to its first suspension. None when it finished without one
    (its result is dropped; what it raised is raised here); otherwise a coroutine to await,
    or to make a task of, that runs the rest of it."""
    try:
        suspended_on = coro.send(None)
    except StopIteration:
        return None
    return _finish(_Rest(coro, suspended_on))
