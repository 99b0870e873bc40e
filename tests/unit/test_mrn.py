"""MRN check digit (spec §4) and our identifier scheme (streams/mrn.py docstring)."""

from __future__ import annotations

import math
import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams import mrn
from streams.mrn import allocate, check_digit, is_valid

MRN_FORM = re.compile(r"[0-9]{2}[A-Z]{2}[A-Z0-9]{12}R[0-9]")

years = st.integers(min_value=2000, max_value=2099)
countries = st.sampled_from(["FR", "DE", "BE", "IT"])
partitions = st.integers(min_value=0, max_value=mrn.PARTITION_LIMIT - 1)
sequences = st.integers(min_value=0, max_value=mrn.SEQUENCE_LIMIT - 1)


def test_spec_test_vector() -> None:
    assert check_digit("22ITZXBZYUTJFLJXK") == "6"
    assert is_valid("22ITZXBZYUTJFLJXKR6") is False  # 19 characters
    assert is_valid("22ITZXBZYUTJFLJXK6") is False  # the vector's procedure letter is K, not R


@pytest.mark.parametrize(
    ("char", "value"),
    [
        ("0", 0),
        ("9", 9),
        ("A", 10),
        ("B", 12),
        ("K", 21),
        ("L", 23),
        ("U", 32),
        ("V", 34),
        ("Z", 38),
    ],
)
def test_letter_values_match_spec_anchors(char: str, value: int) -> None:
    assert mrn.CHAR_VALUES[char] == value


def test_letter_values_skip_multiples_of_11() -> None:
    letters = [mrn.CHAR_VALUES[c] for c in string.ascii_uppercase]
    assert letters == sorted(letters)
    assert all(v % 11 for v in letters)
    assert len(mrn.CHAR_VALUES) == 36


def test_remainder_10_is_written_0() -> None:
    # Position 0 weighs 1, so a first character worth 10 (A) with zeros after gives r = 10.
    assert check_digit("A" + "0" * 16) == "0"
    assert check_digit("1" + "0" * 16) == "1"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "22ITZXBZYUTJFLJX",
        "22ITZXBZYUTJFLJXKR",
        "22itzxbzyutjfljxk",
        "22ITZXBZYUTJFLJX-",
        "22ITZXBZYUTJFLJX٣",
    ],
)
def test_check_digit_refuses_bad_input(bad: str) -> None:
    with pytest.raises(ValueError):
        check_digit(bad)


def test_multiplier_is_coprime_with_36() -> None:
    assert math.gcd(mrn._MULTIPLIER, 36) == 1
    assert 0 <= mrn._OFFSET < mrn.SEQUENCE_LIMIT


@given(year=years, country=countries, partition=partitions, sequence=sequences)
def test_allocate_form_and_determinism(
    year: int, country: str, partition: int, sequence: int
) -> None:
    first = allocate(year, country, partition, sequence)
    assert MRN_FORM.fullmatch(first)
    assert first[:2] == f"{year % 100:02d}"
    assert first[2:4] == country
    assert is_valid(first)
    assert allocate(year, country, partition, sequence) == first


@given(partition=partitions, a=sequences, b=sequences)
def test_distinct_sequences_give_distinct_mrns(partition: int, a: int, b: int) -> None:
    if a != b:
        assert allocate(2026, "FR", partition, a) != allocate(2026, "FR", partition, b)


def test_unique_over_100_000_allocations() -> None:
    allocated = {
        allocate(2026, "FR", partition, sequence)
        for partition in (0, 1, 35, 1295)
        for sequence in range(25_000)
    }
    assert len(allocated) == 100_000


def test_consecutive_sequences_do_not_look_consecutive() -> None:
    first, second = allocate(2026, "FR", 0, 0), allocate(2026, "FR", 0, 1)
    assert first[6:16] != second[6:16]
    assert sum(a != b for a, b in zip(first[6:16], second[6:16], strict=True)) > 3


def test_year_is_two_digits() -> None:
    assert allocate(2005, "FR", 0, 0)[:2] == "05"
    assert allocate(2100, "FR", 0, 0)[:2] == "00"


@pytest.mark.parametrize(
    ("partition", "sequence"),
    [(-1, 0), (1296, 0), (0, -1), (0, 36**10)],
)
def test_allocate_refuses_out_of_range(partition: int, sequence: int) -> None:
    with pytest.raises(ValueError):
        allocate(2026, "FR", partition, sequence)


@pytest.mark.parametrize("country", ["fr", "F", "FRA", "F1"])
def test_allocate_refuses_bad_country(country: str) -> None:
    with pytest.raises(ValueError):
        allocate(2026, country, 0, 0)


def test_allocate_range_edges() -> None:
    assert is_valid(allocate(2026, "FR", 1295, 36**10 - 1))
    assert allocate(2026, "FR", 1295, 0)[4:6] == "ZZ"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "26FR000000000000R",
        "26FR000000000000R00",
        "26fr000000000000R0",
        "26FR000000000000K0",
        "2AFR000000000000R0",
    ],
)
def test_is_valid_refuses_bad_forms(bad: str) -> None:
    assert is_valid(bad) is False


@given(
    partition=partitions,
    sequence=sequences,
    position=st.integers(min_value=0, max_value=17),
    replacement=st.sampled_from(mrn.ALPHABET),
)
def test_substituted_check_digit_or_procedure_letter_is_always_caught(
    partition: int, sequence: int, position: int, replacement: str
) -> None:
    original = allocate(2026, "FR", partition, sequence)
    if position not in (16, 17) or replacement == original[position]:
        return
    assert not is_valid(original[:position] + replacement + original[position + 1 :])


def test_single_substitutions_are_mostly_caught() -> None:
    # Mod 11 with weights 2**i cannot catch a change of value by a multiple of 11 (1 <-> B=12)
    # nor the 0/10 collision; everything else is caught.
    caught = total = 0
    for sequence in range(0, 5_000, 97):
        original = allocate(2026, "FR", sequence % 1296, sequence)
        for position in range(18):
            for char in mrn.ALPHABET:
                if char == original[position]:
                    continue
                total += 1
                caught += not is_valid(original[:position] + char + original[position + 1 :])
    assert caught / total > 0.9
