"""An in-memory index of pending timer deadlines, per partition, for the decision stage.

The deadlines themselves live in each MRN's state, in the stage's table, which is what survives
a restart. This index only answers "which MRNs of partition p may be due at time t" without a
scan of the table on every tick. It is rebuilt from the table after every rebalance, and it may
hold stale entries (a timer cancelled by a COP answer or a presentation): whoever pops an entry
checks the state, which is the authority.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class TimerIndex:
    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self.built = False

    def clear(self) -> None:
        self._heaps.clear()
        self.built = False

    def add(self, partition: int, deadline: int, key: str) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (deadline, key))

    def rebuild(self, entries: Iterable[tuple[int, int, str]]) -> None:
        """Replace the index with (partition, deadline, key) entries."""
        self._heaps = {}
        for partition, deadline, key in entries:
            self._heaps.setdefault(partition, []).append((deadline, key))
        for heap in self._heaps.values():
            heapq.heapify(heap)
        self.built = True

    def due(self, partition: int, now: int) -> list[str]:
        """Pop the keys of `partition` with a deadline at or before `now`, earliest first and
        by key among equal deadlines, so that the firing order is deterministic."""
        heap = self._heaps.get(partition)
        keys: list[str] = []
        seen: set[str] = set()
        while heap and heap[0][0] <= now:
            _, key = heapq.heappop(heap)
            if key not in seen:
                seen.add(key)
                keys.append(key)
        return keys

    def pending(self, partition: int | None = None) -> int:
        if partition is not None:
            return len(self._heaps.get(partition, ()))
        return sum(len(heap) for heap in self._heaps.values())
