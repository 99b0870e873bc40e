"""`cci bench profile`'s reading of py-spy's collapsed stacks."""

from __future__ import annotations

import pytest

from streams.bench.profile import Hotspot, summarise

STACKS = [
    # py-spy's raw format: frames from the outermost, ";"-separated, then the sample count.
    "main (cli.py:10);run (worker.py:5);handle (intake.py:40);encode (codec.py:127) 6",
    "main (cli.py:10);run (worker.py:5);handle (intake.py:41);decode (codec.py:150) 3",
    "main (cli.py:10);run (worker.py:5);send (sender.py:200) 1",
    "main (cli.py:10);walk (tree.py:3);walk (tree.py:4);walk (tree.py:4) 2",
    "",
    "not a stack line",
]


def test_shares_with_and_without_callees_merge_the_lines_of_a_function() -> None:
    total, spots = summarise(STACKS, top=10)
    assert total == 12
    found = {spot.function: spot for spot in spots}
    assert found["main (cli.py)"] == Hotspot("main (cli.py)", 1.0, 0.0)
    # intake.py:40 and :41 are one function.
    assert found["handle (intake.py)"].inclusive == pytest.approx(9 / 12)
    assert found["encode (codec.py)"].own == pytest.approx(6 / 12)
    # Recursion counts each sample once.
    assert found["walk (tree.py)"] == Hotspot("walk (tree.py)", 2 / 12, 2 / 12)


def test_the_top_functions_come_first_and_nothing_sampled_gives_nothing() -> None:
    _, spots = summarise(STACKS, top=2)
    assert [s.function for s in spots] == ["main (cli.py)", "run (worker.py)"]
    assert summarise(["", "garbage"]) == (0, [])
