"""Loading recette campaigns (spec §12): a valid scenario, and every invalid one named by line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from streams.recette.model import (
    DEFAULT_WITHIN,
    CampaignError,
    Expect,
    ExpectNone,
    Send,
    load_campaign,
    substitute,
)

VALID = """\
# A comment first, so that lines are not trivially 1-based from the top.
id: CCI-REJ-004
title: Legacy SIRET-based EORI is refused
severity: majeure
steps:
  - send: declaration.lodged
    value: { lrn: "LRN-004", declarant: { eori: FR12345678901234 }, totalAmountInvoiced: 12.50,
             occurredAt: 2026-04-01T08:20:00Z, countryOfOrigin: NO, reference: 001 }
  - expect: declaration.rejected
    match: { lrn: "LRN-004", errors: [ { code: R021, pointer: /declarant/eori } ] }
    within: 20s
  - expect: trader.notification
    match: { messageCode: IE428 }
    capture: { mrn: mrn }
  - expect-none: declaration.released
    match: { mrn: "${mrn}" }
    within: 500ms
  - send: clock.tick
  - expect: dead-letter
    match: { reason: unknown-mrn, error: "no ${mrn} here" }
    within: 2m
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text))
    return path


def fails(directory: Path, path: Path, line: int | None, fragment: str) -> CampaignError:
    with pytest.raises(CampaignError) as caught:
        load_campaign(directory)
    error = caught.value
    assert (error.path, error.line) == (path, line), str(error)
    assert fragment in error.message, error.message
    prefix = f"{path}:{line}: " if line is not None else f"{path}: "
    assert str(error) == prefix + error.message
    return error


def test_valid_scenario_with_lines_and_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "rej-004.yaml", VALID)
    [scenario] = load_campaign(tmp_path)
    assert (scenario.id, scenario.severity, scenario.path, scenario.line) == (
        "CCI-REJ-004",
        "majeure",
        path,
        2,
    )
    assert scenario.title == "Legacy SIRET-based EORI is refused"
    send, rejected, notification, none, tick, dead = scenario.steps
    assert isinstance(send, Send) and send.line == 6 and send.logical == "declaration.lodged"
    # YAML 1.2 scalars: floats and timestamps keep their text, NO and 001 stay strings.
    assert send.value == {
        "lrn": "LRN-004",
        "declarant": {"eori": "FR12345678901234"},
        "totalAmountInvoiced": "12.50",
        "occurredAt": "2026-04-01T08:20:00Z",
        "countryOfOrigin": "NO",
        "reference": "001",
    }
    assert rejected == Expect(
        "declaration.rejected",
        {"lrn": "LRN-004", "errors": [{"code": "R021", "pointer": "/declarant/eori"}]},
        9,
        20.0,
        {},
    )
    assert isinstance(notification, Expect)
    assert (notification.line, notification.within, notification.capture) == (
        12,
        DEFAULT_WITHIN,
        {"mrn": "mrn"},
    )
    assert none == ExpectNone("declaration.released", {"mrn": "${mrn}"}, 15, 0.5)
    assert tick == Send("clock.tick", {}, 18)
    assert isinstance(dead, Expect) and (dead.logical, dead.within, dead.line) == (
        "dead-letter",
        120.0,
        19,
    )


def test_files_sorted_by_name_yml_too_and_other_files_ignored(tmp_path: Path) -> None:
    write(tmp_path, "b.yml", VALID.replace("CCI-REJ-004", "B"))
    write(tmp_path, "a.yaml", VALID.replace("CCI-REJ-004", "A"))
    write(tmp_path, "notes.txt", "not a scenario")
    assert [s.id for s in load_campaign(tmp_path)] == ["A", "B"]


def test_empty_or_missing_directory(tmp_path: Path) -> None:
    fails(tmp_path, tmp_path, None, "no scenario")
    fails(tmp_path / "nope", tmp_path / "nope", None, "not a directory")


def test_not_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "id: X\ntitle: T\n- item\nseverity: mineure\n")
    fails(tmp_path, path, 3, "not valid YAML")


def test_empty_file_and_not_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", "# nothing\n")
    fails(tmp_path, path, 1, "empty file")
    path.write_text("\n- just\n- a list\n")
    fails(tmp_path, path, 2, "must be a mapping")


def test_two_documents_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", VALID + "---\nid: other\n")
    fails(tmp_path, path, 22, "not valid YAML")


@pytest.mark.parametrize(
    ("old", "new", "line", "fragment"),
    [
        ("id: CCI-REJ-004", "id: ''", 2, "id must be a non-empty string"),
        ("id: CCI-REJ-004", "id: [a]", 2, "id must be a non-empty string"),
        ("id: CCI-REJ-004\n", "", 2, "missing id"),
        ("title: Legacy SIRET-based EORI is refused\n", "", 2, "missing title"),
        ("severity: majeure", "severity: grave", 4, "severity must be one of bloquante"),
        ("severity: majeure", "severity: majeure\nowner: me", 5, "unknown key 'owner'"),
        ("severity: majeure", "severity: majeure\nid: again", 5, "duplicate key 'id'"),
        ("  - send: clock.tick\n", "  - send: clock.tick\n    within: 2s\n", 19, "unknown key"),
        (
            "    within: 20s\n",
            "    within: 20s\n    capture: {}\n    within: 3s\n",
            13,
            "duplicate",
        ),
    ],
)
def test_invalid_top_level_and_keys(
    tmp_path: Path, old: str, new: str, line: int, fragment: str
) -> None:
    assert old in VALID
    path = write(tmp_path, "a.yaml", VALID.replace(old, new, 1))
    fails(tmp_path, path, line, fragment)


def test_steps_missing_or_empty(tmp_path: Path) -> None:
    head = "id: X\ntitle: T\nseverity: mineure\n"
    path = write(tmp_path, "a.yaml", head)
    fails(tmp_path, path, 1, "missing steps")
    path.write_text(head + "steps: []\n")
    fails(tmp_path, path, 4, "steps must be a non-empty list")
    path.write_text(head + "steps:\n")
    fails(tmp_path, path, 4, "steps must be a non-empty list")


STEP_HEAD = "id: X\ntitle: T\nseverity: critique\nsteps:\n  - send: clock.tick\n"


@pytest.mark.parametrize(
    ("step", "line", "fragment"),
    [
        ("  - match: {}\n", 6, "exactly one of send, expect, expect-none (none)"),
        ("  - send: clock.tick\n    expect: clock.tick\n", 6, "(send and expect)"),
        ("  - just a string\n", 6, "step 2 must be a mapping"),
        ("  - send: declarations.lodged\n    value: {}\n", 6, "unknown logical name"),
        ("  - send: dead-letter\n    value: {}\n", 6, "unknown logical name 'dead-letter'"),
        ("  - expect: nope\n", 6, "unknown logical name 'nope' for expect"),
        ("  - send: declaration.lodged\n    match: {}\n", 7, "unknown key 'match' for send"),
        ("  - send: declaration.lodged\n", 6, "needs a value"),
        ("  - send: declaration.lodged\n    value: [1]\n", 7, "value must be a mapping"),
        ("  - expect: declaration.accepted\n    value: {}\n", 7, "unknown key 'value'"),
        ("  - expect-none: declaration.accepted\n    capture: {a: b}\n", 7, "unknown key"),
        ("  - expect: declaration.accepted\n    match: 3\n", 7, "match must be a mapping"),
        ("  - expect: declaration.accepted\n    within: 20\n", 7, "within must be a positive"),
        ("  - expect: declaration.accepted\n    within: 0s\n", 7, "within must be a positive"),
        ("  - expect: declaration.accepted\n    within: 2 days\n", 7, "within must be"),
        ("  - expect-none: declaration.accepted\n    within: -1s\n", 7, "within must be"),
        ("  - expect: declaration.accepted\n    capture: [mrn]\n", 7, "capture must be a mapping"),
        ("  - expect: declaration.accepted\n    capture: {mrn: [a]}\n", 7, "the field name"),
        ("  - expect: declaration.accepted\n    capture: {a-b: mrn}\n", 7, "not a variable"),
    ],
)
def test_invalid_step(tmp_path: Path, step: str, line: int, fragment: str) -> None:
    path = write(tmp_path, "a.yaml", STEP_HEAD + step)
    error = fails(tmp_path, path, line, fragment)
    assert "step 2" in error.message


def test_variable_used_before_capture(tmp_path: Path) -> None:
    steps = (
        "  - expect: declaration.accepted\n"
        "    match: { lrn: L }\n"
        "  - send: invalidation.requested\n"
        "    value:\n"
        "      mrn: x\n"
        "      reason: 'for ${mrn}'\n"
        "  - expect: declaration.accepted\n"
        "    capture: { mrn: mrn }\n"
    )
    path = write(tmp_path, "a.yaml", STEP_HEAD + steps)
    error = fails(tmp_path, path, 11, "${mrn} is used before")
    assert "step 3" in error.message


def test_variable_used_in_its_own_capturing_expect(tmp_path: Path) -> None:
    steps = (
        "  - expect: declaration.accepted\n    match: { mrn: '${mrn}' }\n    capture: {mrn: mrn}\n"
    )
    path = write(tmp_path, "a.yaml", STEP_HEAD + steps)
    fails(tmp_path, path, 7, "${mrn} is used before")


def test_malformed_reference(tmp_path: Path) -> None:
    steps = "  - expect: declaration.accepted\n    match: { mrn: '${mrn' }\n"
    path = write(tmp_path, "a.yaml", STEP_HEAD + steps)
    fails(tmp_path, path, 7, "malformed reference '${mrn'")


def test_duplicate_id_names_both_files(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", "# other\n\n" + VALID)
    error = fails(tmp_path, second, 4, "duplicate id 'CCI-REJ-004'")
    assert f"{first}:2" in error.message


def test_error_in_second_file_names_it(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", VALID)
    second = write(tmp_path, "b.yaml", VALID.replace("CCI-REJ-004", "B").replace("20s", "20x"))
    fails(tmp_path, second, 11, "within")


def test_substitute() -> None:
    variables = {"mrn": "26FR000730ABCDEF12", "n": 3}
    value = {
        "mrn": "${mrn}",
        "text": "MRN ${mrn} x${n}",
        "items": [{"count": "${n}"}, "${mrn}", 5, None],
        "plain": "no $ here {mrn}",
    }
    assert substitute(value, variables) == {
        "mrn": "26FR000730ABCDEF12",
        "text": "MRN 26FR000730ABCDEF12 x3",
        "items": [{"count": 3}, "26FR000730ABCDEF12", 5, None],
        "plain": "no $ here {mrn}",
    }
    assert value["mrn"] == "${mrn}"  # not mutated
    with pytest.raises(KeyError):
        substitute("${other}", variables)
