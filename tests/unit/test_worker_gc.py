"""A stage's worker leaves what it built at start-up out of later collections."""

from __future__ import annotations

import gc

from streams.worker import GC_YOUNG_THRESHOLD, settle_garbage_collector


def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    before = gc.get_threshold()
    built = [{"reference": n} for n in range(1000)]  # tracked containers, as reference data
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() >= len(built)
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert before[0] < GC_YOUNG_THRESHOLD
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
