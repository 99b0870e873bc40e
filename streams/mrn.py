"""Movement Reference Number allocation and checking (spec §4).

An MRN is 18 characters::

    YY CC IIIIIIIIIIII R D
    |  |  |            | `- check digit over the first 17 characters (ISO 6346 style)
    |  |  |            `--- procedure letter: R, import declaration only
    |  |  `---------------- 12-character identifier, unique per node (our scheme, below)
    |  `------------------- ISO country of the supervising office (this node)
    `---------------------- last two digits of the year of acceptance

Identifier scheme (the spec leaves it open): two base-36 characters for the partition of the
lodged topic, then ten base-36 characters for ``(sequence * _MULTIPLIER + _OFFSET) mod 36**10``
where ``sequence`` is that partition's acceptance counter.

- Unique per node: the validation stage keeps one counter per partition of the lodged topic, in
  its changelogged state, and only the task owning a partition advances its counter. Distinct
  partitions give distinct prefixes; within a partition, the affine map is a bijection on
  0..36**10-1 because the multiplier is coprime with 36, so distinct counters give distinct
  identifiers. No coordination between workers is needed.
- Deterministic: the counter advances in input order, so replaying the same inputs allocates the
  same MRNs (spec §8: same inputs, same outputs).
- Not revealing volumes: consecutive counters give unrelated-looking identifiers, so a trader
  cannot read the node's throughput off two MRNs. This is obfuscation, not secrecy: the map is
  easy to invert for whoever knows the constants.
"""

from __future__ import annotations

import re

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_BASE = len(ALPHABET)
PARTITION_LIMIT = _BASE**2
SEQUENCE_LIMIT = _BASE**10

# Odd and not a multiple of 3, hence coprime with 36 = 2**2 * 3**2: the map is a bijection.
_MULTIPLIER = 0x5DEECE66D
_OFFSET = 0x1C6D_2E4B_9A17

_MRN = re.compile(r"[0-9]{2}[A-Z]{2}[A-Z0-9]{12}R[0-9]")
_COUNTRY = re.compile(r"[A-Z]{2}")


def _letter_values() -> dict[str, int]:
    """Spec §4: digits as is; A=10, then each next letter the next value, skipping multiples
    of 11 (which would be worth 0 in a mod-11 sum and hide a substitution)."""
    values = {digit: int(digit) for digit in "0123456789"}
    value = 10
    for letter in ALPHABET[10:]:
        if value % 11 == 0:
            value += 1
        values[letter] = value
        value += 1
    return values


CHAR_VALUES: dict[str, int] = _letter_values()


def check_digit(first17: str) -> str:
    """The check digit of the first 17 characters of an MRN."""
    if len(first17) != 17:
        raise ValueError(f"expected 17 characters, got {len(first17)}")
    total = 0
    for position, char in enumerate(first17):
        value = CHAR_VALUES.get(char)
        if value is None:
            raise ValueError(f"character {char!r} at position {position} is not in [0-9A-Z]")
        total += value << position
    return str(total % 11 % 10)


def _base36(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, _BASE)
        chars.append(ALPHABET[digit])
    return "".join(reversed(chars))


def allocate(year: int, country: str, partition: int, sequence: int) -> str:
    """The MRN of the `sequence`-th acceptance (from 0) of `partition` of the lodged topic."""
    if not _COUNTRY.fullmatch(country):
        raise ValueError(f"country {country!r} must be two capital letters")
    if not 0 <= partition < PARTITION_LIMIT:
        raise ValueError(f"partition {partition} is outside 0..{PARTITION_LIMIT - 1}")
    if not 0 <= sequence < SEQUENCE_LIMIT:
        raise ValueError(f"sequence {sequence} is outside 0..{SEQUENCE_LIMIT - 1}")
    scrambled = (sequence * _MULTIPLIER + _OFFSET) % SEQUENCE_LIMIT
    first17 = f"{year % 100:02d}{country}{_base36(partition, 2)}{_base36(scrambled, 10)}R"
    return first17 + check_digit(first17)


def is_valid(mrn: str) -> bool:
    """Whether `mrn` has the form of an import MRN (spec §4) and a correct check digit."""
    return _MRN.fullmatch(mrn) is not None and check_digit(mrn[:17]) == mrn[17]
