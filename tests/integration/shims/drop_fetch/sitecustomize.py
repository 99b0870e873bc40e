"""Test-only fault, loaded by a worker started with this directory on PYTHONPATH: the first
fetch holding an input whose key contains one of CCI_TEST_DROP_KEYS is dropped on its way to
the stream, after aiokafka has moved past it, as Faust drops fetches around a rebalance
(docs/decisions.md, Exactly-once, 18)."""

from __future__ import annotations

import os
from typing import Any

_KEYS = [k.encode() for k in os.environ.get("CCI_TEST_DROP_KEYS", "").split(",") if k]

if _KEYS:
    from streams.app import LockedCommitConsumer

    _original = LockedCommitConsumer._wait_next_records
    _dropped: list[Any] = []

    async def _dropping(self: LockedCommitConsumer, timeout: float) -> Any:
        records, active = await _original(self, timeout)
        if records and not _dropped:
            hit = {
                tp
                for tp, batch in records.items()
                if any(r.key and any(k in r.key for k in _KEYS) for r in batch)
            }
            if hit:
                _dropped.extend(hit)
                print(f"test fault: dropped a fetch of {sorted(hit)}", flush=True)
                records = {tp: batch for tp, batch in records.items() if tp not in hit}
        return records, active

    LockedCommitConsumer._wait_next_records = _dropping  # type: ignore[method-assign]
