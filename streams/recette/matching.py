"""Subset matching of campaign expectations against events in JSON form (spec §12).

`actual` is always an event as `streams.jsonform.to_json` writes it: decimals are strings at the
schema's scale (`"0.00"`, `"1.085000"`), timestamps are ISO-8601 strings in UTC with milliseconds
(`"2026-04-01T08:20:00.000Z"`), bytes are base64 strings. `expected` comes from YAML as
`streams.recette.model` reads it (floats and timestamps keep the author's text).

Rules:

- An object matches when every key it gives is present in the actual object and matches; extra
  actual keys are ignored. A list matches a list of the same length, element by element.
- Decimals compare by value, but only when the actual value is decimal-shaped, i.e. a string like
  `-12.50` (digits, a point, digits: the JSON form always writes a decimal with its scale) and the
  expected value is a number or a decimal string. Without the schema at hand this is the safe
  reading: identifiers are never written that way, so `"001"` never matches `"1"`, while `"0"`,
  `0` and `"0.0"` all match `"0.00"`.
- Timestamps compare as instants when both sides are strings that parse as ISO-8601 date-times
  with a time part and a UTC offset: `2026-04-01T10:20:00+02:00` matches
  `2026-04-01T08:20:00.000Z`. A date alone or a local time is compared as text.
- Anything else compares by equality, except that a boolean only matches a boolean (Python's
  `True == 1` must not leak into a campaign), and a YAML integer matches the same digits written
  as a string (an unquoted `lrn: 12345` means the string the author sees).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

_DECIMAL_SHAPED = re.compile(r"^-?[0-9]+\.[0-9]+$")
_DECIMAL_TEXT = re.compile(r"^[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
_DATE_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}")


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str) and _DECIMAL_TEXT.match(value):
        try:
            return Decimal(value)
        except InvalidOperation:  # pragma: no cover - the pattern already excludes it
            return None
    return None


def _instant(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else None
    if not isinstance(value, str) or not _DATE_TIME.match(value):
        return None
    try:
        # Python 3.11 reads `Z` and any number of fraction digits.
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _scalar_matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected == actual
    if isinstance(actual, str) and _DECIMAL_SHAPED.match(actual):
        wanted = _decimal(expected)
        if wanted is not None:
            return wanted == Decimal(actual)
    want_instant, got_instant = _instant(expected), _instant(actual)
    if want_instant is not None and got_instant is not None:
        return want_instant == got_instant
    if isinstance(expected, int) and isinstance(actual, str):
        return str(expected) == actual
    return bool(expected == actual)


def matches(expected: Any, actual: Any) -> bool:
    """Whether `actual` (an event or a part of one, JSON form) matches `expected` (spec §12)."""
    return _mismatch(expected, actual, "") is None


def describe_mismatch(expected: Any, actual: Any) -> str:
    """The first difference as `<JSON pointer>: <what>`, or "" when `actual` matches."""
    return _mismatch(expected, actual, "") or ""


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _mismatch(expected: Any, actual: Any, pointer: str) -> str | None:
    where = pointer or "/"
    if isinstance(expected, Mapping):
        if not isinstance(actual, Mapping):
            return f"{where}: expected an object, got {_short(actual)}"
        for key, value in expected.items():
            here = f"{pointer}/{_escape(str(key))}"
            if key not in actual:
                return f"{here}: missing (expected {_short(value)})"
            found = _mismatch(value, actual[key], here)
            if found is not None:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return f"{where}: expected a list, got {_short(actual)}"
        if len(expected) != len(actual):
            return f"{where}: expected {len(expected)} items, got {len(actual)}"
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found = _mismatch(want, got, f"{pointer}/{i}")
            if found is not None:
                return found
        return None
    if _scalar_matches(expected, actual):
        return None
    return f"{where}: expected {_short(expected)}, got {_short(actual)}"


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def capture_values(capture: Mapping[str, str], event: Mapping[str, Any]) -> dict[str, Any]:
    """The variables an `expect` captures from the event that satisfied it.

    A field name is a key of the event or a dotted path into it (`declaration.lrn`, and list
    indexes as numbers: `errors.0.code`). The value is kept as the JSON form gives it (a string
    for MRNs, decimals and timestamps). A missing field raises KeyError naming the variable, the
    field and the part of the path that is missing.
    """
    values: dict[str, Any] = {}
    for name, path in capture.items():
        current: Any = event
        for part in path.split("."):
            if isinstance(current, Mapping) and part in current:
                current = current[part]
            elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
                current = current[int(part)]
            else:
                raise KeyError(
                    f"capture {name}: the event has no field {path!r} (no {part!r} there)"
                )
        values[name] = current
    return values
