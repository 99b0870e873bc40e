"""Subset matching (spec §12) against events in JSON form, mismatch descriptions, captures."""

from __future__ import annotations

from typing import Any

import pytest

from streams.recette.matching import capture_values, describe_mismatch, matches

REJECTED: dict[str, Any] = {
    "eventId": "0b6f9a7e-2f0c-4a8e-b1d2-6c3e5f7a9b10",
    "occurredAt": "2026-04-01T08:20:00.000Z",
    "lrn": "LRN-004",
    "declarantEori": "FR12345678901234",
    "errors": [{"code": "R021", "pointer": "/declarant/eori", "message": "legacy SIRET EORI"}],
}


def test_spec_example_subset_match_with_list() -> None:
    expected = {"lrn": "LRN-004", "errors": [{"code": "R021", "pointer": "/declarant/eori"}]}
    assert matches(expected, REJECTED)
    assert matches({}, REJECTED)
    assert not matches({"lrn": "LRN-005"}, REJECTED)


def test_list_length_must_be_equal() -> None:
    two = {**REJECTED, "errors": [*REJECTED["errors"], {"code": "R020", "pointer": "/x"}]}
    assert not matches({"errors": [{"code": "R021"}]}, two)
    assert matches({"errors": [{"code": "R021"}, {"code": "R020"}]}, two)
    assert not matches({"errors": [{"code": "R020"}, {"code": "R021"}]}, two)  # in order
    assert not matches({"errors": []}, two)
    assert matches({"errors": []}, {"errors": []})


def test_nested_objects_and_extra_keys_ignored() -> None:
    event = {"mrn": "M", "declaration": {"lrn": "L", "declarant": {"eori": "FR1", "name": "N"}}}
    assert matches({"declaration": {"declarant": {"eori": "FR1"}}}, event)
    assert not matches({"declaration": {"declarant": {"eori": "FR2"}}}, event)
    assert not matches({"declaration": {"missing": 1}}, event)
    assert not matches({"declaration": "L"}, event)
    assert not matches({"mrn": {"a": 1}}, event)
    assert not matches({"mrn": ["M"]}, event)


@pytest.mark.parametrize(
    ("expected", "actual", "result"),
    [
        ("0", "0.00", True),  # the spec's example
        (0, "0.00", True),
        ("0.0", "0.00", True),
        ("12.50", "12.50", True),
        ("12.5", "12.50", True),  # YAML float 12.5 read as its text
        (12, "12.00", True),
        ("-3", "-3.00", True),
        ("1.085", "1.085000", True),
        ("0.01", "0.00", False),
        (1, "0.99", False),
        ("abc", "0.00", False),
        # Not decimal-shaped on the actual side: identifiers compare as text.
        ("001", "1", False),
        ("1", "001", False),
        (1, "1", True),  # an unquoted YAML number means the string the author sees
        (1, "01", False),
        (True, 1, False),
        (1, True, False),
        (True, True, True),
        (False, "false", False),
        (None, None, True),
        (None, "x", False),
        ("R021", "R021", True),
        ("IE428", "IE429", False),
        (3, 3, True),
        (3, 4, False),
    ],
)
def test_decimals_and_scalars(expected: Any, actual: Any, result: bool) -> None:
    assert matches({"v": expected}, {"v": actual}) is result


@pytest.mark.parametrize(
    ("expected", "actual", "result"),
    [
        ("2026-04-01T08:20:00Z", "2026-04-01T08:20:00.000+00:00", True),  # the spec's example
        ("2026-04-01T08:20:00Z", "2026-04-01T08:20:00.000Z", True),
        ("2026-04-01T10:20:00+02:00", "2026-04-01T08:20:00.000Z", True),
        ("2026-04-01T08:20:00.001Z", "2026-04-01T08:20:00.000Z", False),
        ("2026-04-01T08:20:00Z", "2026-04-01T08:21:00.000Z", False),
        ("2026-04-01 08:20:00Z", "2026-04-01T08:20:00.000Z", True),
        # Without an offset there is no instant: text comparison.
        ("2026-04-01T08:20:00", "2026-04-01T08:20:00.000Z", False),
        ("2026-04-01", "2026-04-01", True),
        ("2026-04-01", "2026-04-01T00:00:00.000Z", False),
    ],
)
def test_timestamps_compare_as_instants(expected: str, actual: str, result: bool) -> None:
    assert matches({"occurredAt": expected}, {"occurredAt": actual}) is result


def test_describe_mismatch_names_the_first_difference() -> None:
    assert describe_mismatch({"lrn": "LRN-004"}, REJECTED) == ""
    assert describe_mismatch({"lrn": "X"}, REJECTED) == "/lrn: expected 'X', got 'LRN-004'"
    assert (
        describe_mismatch({"errors": [{"code": "R020"}]}, REJECTED)
        == "/errors/0/code: expected 'R020', got 'R021'"
    )
    assert describe_mismatch({"errors": []}, REJECTED) == "/errors: expected 0 items, got 1"
    assert describe_mismatch({"mrn": "M"}, REJECTED) == "/mrn: missing (expected 'M')"
    assert describe_mismatch({"a/b": 1}, {}) == "/a~1b: missing (expected 1)"
    assert describe_mismatch({"lrn": {"x": 1}}, REJECTED).startswith("/lrn: expected an object")
    assert describe_mismatch({"a": 1}, "text") == "/: expected an object, got 'text'"
    assert describe_mismatch({"lrn": [1]}, REJECTED).startswith("/lrn: expected a list")


def test_capture_values() -> None:
    event = {
        "mrn": "26FR000730ABCDEF12",
        "declaration": {"lrn": "LRN-1", "goodsItems": [{"netMass": "1.000"}]},
        "control": None,
    }
    assert capture_values(
        {"mrn": "mrn", "lrn": "declaration.lrn", "mass": "declaration.goodsItems.0.netMass"},
        event,
    ) == {"mrn": "26FR000730ABCDEF12", "lrn": "LRN-1", "mass": "1.000"}
    assert capture_values({"c": "control"}, event) == {"c": None}
    assert capture_values({}, event) == {}


@pytest.mark.parametrize("path", ["nope", "declaration.nope", "declaration.goodsItems.1", "mrn.x"])
def test_capture_missing_field(path: str) -> None:
    event = {"mrn": "M", "declaration": {"goodsItems": [{}]}}
    with pytest.raises(KeyError, match=f"capture v: the event has no field '{path}'"):
        capture_values({"v": path}, event)
