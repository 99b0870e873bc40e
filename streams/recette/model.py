"""Recette campaigns (spec §12): loading a folder of YAML scenarios into checked steps.

Decisions, and why:

- Every error is a `CampaignError` naming the file and the line (1-based) of the offending node,
  because a campaign is written by hand by people outside the project: "invalid campaign" alone
  sends them hunting. Lines come from PyYAML's node tree (`start_mark.line + 1`); values are then
  constructed from those same nodes, so the line of a step and its content cannot disagree.
- The whole campaign is checked before anything runs: a typo in the last scenario must not be
  discovered after twenty minutes of Kafka round trips. Unknown keys are refused, at the top level
  as in steps, for the same reason `streams.jsonform` refuses unknown fields: a misspelt `within`
  must not silently become the default.
- Scalars are read with the YAML 1.2 core rules rather than PyYAML's YAML 1.1 ones: only
  `true`/`false` are booleans (a country code `NO` stays a string), only plain decimal digits are
  integers (an LRN `001` or a time `08:20` stay strings), and floats and timestamps keep the text
  the author wrote (`12.50` is the decimal string `"12.50"`, as the JSON form of money is; an
  unquoted `2026-04-01T08:20:00Z` is that ISO string). The events carry no float field, so no
  precision is lost and the values go straight to `streams.jsonform.from_json`.
- `${name}` may only refer to a variable captured by an earlier `expect`: checked statically in
  step order, since a run would otherwise fail late with a confusing "no event matched".
- `dead-letter` is accepted as the logical name of an `expect`/`expect-none`, so that campaigns
  can assert that an event for an unknown MRN is dead-lettered (spec §9, §11); the engine reads
  every stage's dead-letter topic for it. It cannot be sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from streams.topics import DEAD_LETTER, EVENTS

SEVERITIES: tuple[str, ...] = ("bloquante", "critique", "majeure", "mineure")
DEFAULT_WITHIN = 30.0
SENDABLE: frozenset[str] = frozenset(EVENTS)
EXPECTABLE: frozenset[str] = frozenset(EVENTS) | {DEAD_LETTER}

_TOP_KEYS = ("id", "title", "severity", "steps")
_STEP_KEYS: dict[str, frozenset[str]] = {
    "send": frozenset({"send", "value"}),
    "expect": frozenset({"expect", "match", "within", "capture"}),
    "expect-none": frozenset({"expect-none", "match", "within"}),
}
_WITHIN = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VARIABLE = re.compile(r"\$\{(" + _NAME + r")\}")
_ANY_REFERENCE = re.compile(r"\$\{([^}]*)\}?")
_VARIABLE_NAME = re.compile(r"^" + _NAME + r"$")
_YAML_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")


class CampaignError(ValueError):
    """An invalid campaign: the file, the line (1-based, None for the folder itself), and why."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}" if line is not None else f"{path}: {message}")
        self.path = path
        self.line = line
        self.message = message


@dataclass(frozen=True)
class Send:
    logical: str
    value: dict[str, Any]
    line: int


@dataclass(frozen=True)
class Expect:
    logical: str
    match: dict[str, Any]
    line: int
    within: float = DEFAULT_WITHIN
    capture: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ExpectNone:
    logical: str
    match: dict[str, Any]
    line: int
    within: float = DEFAULT_WITHIN


Step = Send | Expect | ExpectNone


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    severity: str
    steps: list[Step]
    path: Path
    line: int  # of the `id` key, where a duplicate id is reported


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core scalars (see the module docstring)."""


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> int | str:
    text = str(node.value)
    return int(text) if _YAML_INT.match(text) else text


def _construct_bool(loader: yaml.SafeLoader, node: ScalarNode) -> bool | str:
    text = str(node.value)
    return text.lower() == "true" if text.lower() in ("true", "false") else text


def _construct_text(loader: yaml.SafeLoader, node: ScalarNode) -> str:
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_text)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", _construct_text)


def _line(node: Node) -> int:
    return int(node.start_mark.line) + 1


def substitute(value: Any, variables: Mapping[str, Any]) -> Any:
    """Replace `${name}` in every string of `value`, recursively through dicts and lists.

    A string that is exactly `${name}` becomes the variable's value as it is (a captured number
    stays a number); inside a longer string the value is written with `str`. An unknown name
    raises KeyError: `load_campaign` has already checked that every name is captured earlier, so
    this only happens when the engine skipped a capture.
    """
    if isinstance(value, str):
        whole = _VARIABLE.fullmatch(value)
        if whole:
            return variables[whole.group(1)]
        return _VARIABLE.sub(lambda m: str(variables[m.group(1)]), value)
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    return value


def _references(node: Node) -> Iterator[tuple[str, int]]:
    """Every `${...}` text inside the scalars of `node`, with its line."""
    if isinstance(node, ScalarNode):
        for m in _ANY_REFERENCE.finditer(str(node.value)):
            yield m.group(0), _line(node)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            yield from _references(item)
    elif isinstance(node, MappingNode):
        for key, item in node.value:
            yield from _references(key)
            yield from _references(item)


def _check_duplicate_keys(path: Path, node: Node) -> None:
    """PyYAML keeps the last of two equal keys silently; a campaign author meant something."""
    if isinstance(node, MappingNode):
        seen: dict[Any, int] = {}
        for key, item in node.value:
            if isinstance(key, ScalarNode):
                if key.value in seen:
                    raise CampaignError(
                        path,
                        _line(key),
                        f"duplicate key {key.value!r} (first at line {seen[key.value]})",
                    )
                seen[key.value] = _line(key)
            _check_duplicate_keys(path, item)
    elif isinstance(node, SequenceNode):
        for item in node.value:
            _check_duplicate_keys(path, item)


class _File:
    """One scenario file being checked: constructs values from nodes, raises with lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CampaignError(path, None, f"cannot read: {exc}") from None
        self.loader = _Loader(text)
        try:
            root = self.loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = int(mark.line) + 1 if mark is not None else 1
            raise CampaignError(path, line, f"not valid YAML: {exc.problem or exc}") from None
        except yaml.YAMLError as exc:
            raise CampaignError(path, 1, f"not valid YAML: {exc}") from None
        if root is None:
            raise CampaignError(path, 1, "empty file; expected one scenario (a mapping)")
        self.root: Node = root

    def error(self, node: Node, message: str) -> CampaignError:
        return CampaignError(self.path, _line(node), message)

    def value(self, node: Node) -> Any:
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise self.error(node, f"invalid value: {exc}") from None

    def mapping(self, node: Node, what: str) -> dict[str, tuple[Node, Node]]:
        """The entries of a mapping node: key text → (key node, value node)."""
        if not isinstance(node, MappingNode):
            raise self.error(node, f"{what} must be a mapping")
        entries: dict[str, tuple[Node, Node]] = {}
        for key, item in node.value:
            if not isinstance(key, ScalarNode):
                raise self.error(key, f"{what}: keys must be plain names")
            entries[str(key.value)] = (key, item)
        return entries

    def string(self, node: Node, what: str) -> str:
        value = self.value(node)
        if not isinstance(value, str) or not value.strip():
            raise self.error(node, f"{what} must be a non-empty string")
        return value


def _within(file: _File, node: Node, what: str) -> float:
    text = file.value(node)
    match = _WITHIN.match(text) if isinstance(text, str) else None
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0.0
    if seconds <= 0:
        raise file.error(
            node, f"{what}: within must be a positive duration like 20s, 500ms or 2m, got {text!r}"
        )
    return seconds


def _step(file: _File, node: Node, index: int, defined: set[str]) -> Step:
    what = f"step {index + 1}"
    entries = file.mapping(node, what)
    kinds = [k for k in _STEP_KEYS if k in entries]
    if len(kinds) != 1:
        found = " and ".join(kinds) if kinds else "none"
        raise file.error(
            node, f"{what} must have exactly one of send, expect, expect-none ({found})"
        )
    kind = kinds[0]
    for key, (key_node, _) in entries.items():
        if key not in _STEP_KEYS[kind]:
            allowed = ", ".join(sorted(_STEP_KEYS[kind] - {kind}))
            raise file.error(
                key_node, f"{what}: unknown key {key!r} for {kind} (allowed: {allowed})"
            )
    logical_node = entries[kind][1]
    logical = file.string(logical_node, f"{what}: {kind}")
    known = SENDABLE if kind == "send" else EXPECTABLE
    if logical not in known:
        raise file.error(
            logical_node,
            f"{what}: unknown logical name {logical!r} for {kind} "
            f"(known: {', '.join(sorted(known))})",
        )
    # Variables are defined by captures of earlier steps only: a capture happens after its own
    # expect has matched, so that expect's match cannot use it.
    for body in ("value", "match"):
        if body in entries:
            for text, line in _references(entries[body][1]):
                name = text[2:-1] if text.endswith("}") else None
                if name is None or not _VARIABLE_NAME.match(name):
                    raise CampaignError(file.path, line, f"{what}: malformed reference {text!r}")
                if name not in defined:
                    raise CampaignError(
                        file.path,
                        line,
                        f"{what}: ${{{name}}} is used before any earlier expect captures it",
                    )
    line = _line(node)
    if kind == "send":
        if "value" in entries:
            value = file.value(entries["value"][1])
            if not isinstance(value, dict):
                raise file.error(entries["value"][1], f"{what}: value must be a mapping")
        elif logical == "clock.tick":
            value = {}  # a tick's only fields default (eventId, occurredAt)
        else:
            raise file.error(node, f"{what}: send {logical} needs a value")
        return Send(logical, value, line)
    match: Any = {}
    if "match" in entries:
        match = file.value(entries["match"][1])
        if not isinstance(match, dict):
            raise file.error(entries["match"][1], f"{what}: match must be a mapping")
    within = _within(file, entries["within"][1], what) if "within" in entries else DEFAULT_WITHIN
    if kind == "expect-none":
        return ExpectNone(logical, match, line, within)
    capture: dict[str, str] = {}
    if "capture" in entries:
        capture_node = entries["capture"][1]
        for name, (key_node, field_node) in file.mapping(capture_node, f"{what}: capture").items():
            if not _VARIABLE_NAME.match(name):
                raise file.error(key_node, f"{what}: capture: {name!r} is not a variable name")
            capture[name] = file.string(field_node, f"{what}: capture {name}: the field name")
        defined.update(capture)
    return Expect(logical, match, line, within, capture)


def load_scenario(path: Path) -> Scenario:
    """Read and check one scenario file; raises CampaignError."""
    file = _File(path)
    _check_duplicate_keys(path, file.root)
    entries = file.mapping(file.root, "a scenario")
    for key, (key_node, _) in entries.items():
        if key not in _TOP_KEYS:
            raise file.error(key_node, f"unknown key {key!r} (allowed: {', '.join(_TOP_KEYS)})")
    for key in _TOP_KEYS:
        if key not in entries:
            raise file.error(file.root, f"missing {key}")
    scenario_id = file.string(entries["id"][1], "id")
    title = file.string(entries["title"][1], "title")
    severity_node = entries["severity"][1]
    severity = file.value(severity_node)
    if severity not in SEVERITIES:
        raise file.error(
            severity_node, f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}"
        )
    steps_node = entries["steps"][1]
    if not isinstance(steps_node, SequenceNode) or not steps_node.value:
        raise file.error(steps_node, "steps must be a non-empty list")
    defined: set[str] = set()
    steps = [_step(file, node, i, defined) for i, node in enumerate(steps_node.value)]
    return Scenario(scenario_id, title, str(severity), steps, path, _line(entries["id"][0]))


def load_campaign(directory: Path) -> list[Scenario]:
    """Every `*.yaml`/`*.yml` scenario of `directory`, sorted by file name, fully checked.

    Raises CampaignError for the first invalid file (the folder itself when it is missing or
    holds no scenario), and for an id used twice (naming both files).
    """
    if not directory.is_dir():
        raise CampaignError(directory, None, "not a directory")
    files = sorted(
        (p for p in directory.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml")),
        key=lambda p: p.name,
    )
    if not files:
        raise CampaignError(directory, None, "no scenario (*.yaml or *.yml) in this folder")
    scenarios: list[Scenario] = []
    by_id: dict[str, Scenario] = {}
    for path in files:
        scenario = load_scenario(path)
        first = by_id.get(scenario.id)
        if first is not None:
            raise CampaignError(
                path,
                scenario.line,
                f"duplicate id {scenario.id!r}, already used in {first.path}:{first.line}",
            )
        by_id[scenario.id] = scenario
        scenarios.append(scenario)
    return scenarios
