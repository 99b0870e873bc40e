"""Results of a recette campaign and the reports made from them (JUnit XML, Markdown, HTML).

Decisions, and why:

- Three forms for three readers: JUnit XML for CI (one testcase per scenario, classname the file
  stem so a failure points at its file), Markdown for the merge request, and one self-contained
  HTML file for the steering committee (COPIL): inline CSS, no script, no external asset, so it
  can be mailed or archived as is. Every value put in HTML goes through `html.escape`: event
  values come from the system under test and may hold anything.
- The steering indicators are: scenarios run/passed/failed, anomalies (failed scenarios) by
  severity, and coverage of the contract along three axes: rule codes (spec §4, §9), trader
  message codes (§10) and decision paths (§8, §9). Coverage is measured on what the system
  actually emitted during the campaign, passed scenarios or not, not on what scenarios claim to
  test: a scenario that expects R021 but gets R020 has exercised R020.
- Decision paths are derived per scenario (each scenario has its own namespace, so its MRNs are
  its own) from the events the engine recorded for the scenario. The engine records every topic
  of the namespace, the records it sent included; the `COP timeout` path needs that (a release
  with no `cop.risk-result` for the MRN, in a scenario that sent ticks).
- A failure keeps at most `SEEN_CAP` events of the expected logical name: enough to see what
  came instead, short enough to keep a report readable when a scenario floods a topic.
"""

from __future__ import annotations

import html
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.recette.model import SEVERITIES, Scenario
from streams.topics import DEAD_LETTER

SEEN_CAP = 20

RULE_CODES: tuple[str, ...] = (
    "R010",
    "R011",
    "R012",
    "R020",
    "R021",
    "R030",
    "R031",
    "R032",
    "R040",
    "R041",
    "R042",
    "R050",
    "R051",
    "R052",
    *(f"R06{i}" for i in range(10)),
    "R090",
    "R095",
)
MESSAGE_CODES: tuple[str, ...] = ("IE428", "IE456", "IE460", "IE429", "IE451", "IE410")
DECISION_PATHS: tuple[str, ...] = (
    "rejected",
    "released without control",
    "released after control A1",
    "not released B1",
    "lapsed",
    "invalidated",
    "invalidation refused R095",
    "COP timeout",
    "pre-lodged presented",
    "dead letter",
    "unknown MRN",
)


@dataclass
class StepFailure:
    """The first failing step of a scenario.

    `index` is 0-based; `kind` is "send", "expect", "expect-none", or "error" for anything else
    that stopped the scenario (a capture on a missing field, a broker error). `seen` holds the
    events of `logical` seen in the scenario (JSON form), capped at SEEN_CAP; `seen_total` keeps
    how many there were.
    """

    index: int
    step_line: int
    kind: str
    logical: str
    expected: dict[str, Any]
    seen: list[dict[str, Any]]
    message: str
    seen_total: int | None = None

    def __post_init__(self) -> None:
        if self.seen_total is None:
            self.seen_total = len(self.seen)
        self.seen = list(self.seen[:SEEN_CAP])


@dataclass
class ScenarioResult:
    scenario: Scenario
    passed: bool
    duration: float  # seconds
    failure: StepFailure | None = None
    # Every event of the scenario's namespace: (logical name, JSON record), dead letters as
    # "dead-letter".
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class CoverageAxis:
    name: str
    universe: tuple[str, ...]
    exercised: frozenset[str]

    @property
    def covered(self) -> tuple[str, ...]:
        return tuple(x for x in self.universe if x in self.exercised)

    @property
    def missing(self) -> tuple[str, ...]:
        """What no scenario exercised, in the order of the universe."""
        return tuple(x for x in self.universe if x not in self.exercised)

    @property
    def percent(self) -> float:
        return 100.0 * len(self.covered) / len(self.universe) if self.universe else 100.0


@dataclass(frozen=True)
class Coverage:
    rules: CoverageAxis
    messages: CoverageAxis
    paths: CoverageAxis

    @property
    def axes(self) -> tuple[CoverageAxis, ...]:
        return (self.rules, self.messages, self.paths)

    def missing(self) -> dict[str, list[str]]:
        """What no scenario exercised, by axis name; only axes with a gap, so {} is complete."""
        return {axis.name: list(axis.missing) for axis in self.axes if axis.missing}

    def summary(self) -> str:
        """One line for a console: `rule codes 24/26 (92%), message codes 6/6 (100%), ...`."""
        return ", ".join(
            f"{a.name} {len(a.covered)}/{len(a.universe)} ({a.percent:.0f}%)" for a in self.axes
        )


def _codes(record: Mapping[str, Any]) -> set[str]:
    errors = record.get("errors") or []
    return {str(e["code"]) for e in errors if isinstance(e, Mapping) and "code" in e}


def decision_paths(events: Iterable[tuple[str, Mapping[str, Any]]]) -> set[str]:
    """The decision paths (DECISION_PATHS) exercised by the events of one scenario."""
    by_name: dict[str, list[Mapping[str, Any]]] = {}
    for logical, record in events:
        by_name.setdefault(logical, []).append(record)

    def mrns(logical: str, **where: str) -> set[str]:
        return {
            str(r.get("mrn"))
            for r in by_name.get(logical, [])
            if all(r.get(k) == v for k, v in where.items())
        }

    paths: set[str] = set()
    released = mrns("declaration.released")
    # Under control: IE460 was sent, or the status history went through UNDER_CONTROL.
    controlled = mrns("trader.notification", messageCode="IE460")
    for status in by_name.get("declaration.status", []):
        states = {status.get("state")} | {h.get("state") for h in status.get("history") or []}
        if "UNDER_CONTROL" in states:
            controlled.add(str(status.get("mrn")))
    not_satisfactory = mrns("declaration.not-released", reason="CONTROL_NOT_SATISFACTORY")
    if by_name.get("declaration.rejected"):
        paths.add("rejected")
    if released - controlled:
        paths.add("released without control")
    if released & controlled:
        paths.add("released after control A1")
    if not_satisfactory:
        paths.add("not released B1")
    if mrns("declaration.not-released", reason="LAPSED"):
        paths.add("lapsed")
    if by_name.get("declaration.invalidated"):
        paths.add("invalidated")
    if any(
        r.get("messageCode") == "IE456" and "R095" in _codes(r)
        for r in by_name.get("trader.notification", [])
    ):
        paths.add("invalidation refused R095")
    # The final control is only known once the COP answered or timed out, so a decided MRN
    # without a COP answer timed out; ticks prove the engine recorded the inbound topics.
    decided = released | not_satisfactory | controlled
    answered = mrns("cop.risk-result")
    if by_name.get("clock.tick") and (decided & mrns("cop.forwarded")) - answered:
        paths.add("COP timeout")
    pre_lodged = {
        str(r.get("mrn"))
        for r in by_name.get("declaration.accepted", [])
        if (r.get("declaration") or {}).get("additionalDeclarationType") == "D"
    }
    if pre_lodged & (mrns("cop.goods-presented") | released):
        paths.add("pre-lodged presented")
    dead = by_name.get(DEAD_LETTER, [])
    if dead:
        paths.add("dead letter")
    if any(r.get("reason") == "unknown-mrn" for r in dead):
        paths.add("unknown MRN")
    return paths


def coverage(results: Iterable[ScenarioResult]) -> Coverage:
    """Coverage of rule codes, message codes and decision paths by the events of every scenario."""
    rules: set[str] = set()
    messages: set[str] = set()
    paths: set[str] = set()
    for result in results:
        for logical, record in result.events:
            if logical in ("declaration.rejected", "trader.notification"):
                rules |= _codes(record)
            if logical == "trader.notification" and record.get("messageCode"):
                messages.add(str(record["messageCode"]))
        paths |= decision_paths(result.events)
    return Coverage(
        CoverageAxis("rule codes", RULE_CODES, frozenset(rules)),
        CoverageAxis("message codes", MESSAGE_CODES, frozenset(messages)),
        CoverageAxis("decision paths", DECISION_PATHS, frozenset(paths)),
    )


def anomalies_by_severity(results: Iterable[ScenarioResult]) -> dict[str, int]:
    """Failed scenarios per severity, every severity present (0 when none failed)."""
    counts = dict.fromkeys(SEVERITIES, 0)
    for result in results:
        if not result.passed:
            counts[result.scenario.severity] = counts.get(result.scenario.severity, 0) + 1
    return counts


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def _failure_headline(result: ScenarioResult) -> str:
    failure = result.failure
    if failure is None:
        return "failed"
    return (
        f"step {failure.index + 1} (line {failure.step_line}) {failure.kind} {failure.logical}: "
        f"{failure.message}"
    )


def _seen_title(failure: StepFailure) -> str:
    shown = len(failure.seen)
    total = failure.seen_total if failure.seen_total is not None else shown
    extra = f", first {shown} shown" if total > shown else ""
    return f"{failure.logical} events seen: {total}{extra}"


def write_junit(results: Sequence[ScenarioResult], path: Path) -> None:
    """JUnit XML: one testsuite `recette`, one testcase per scenario."""
    failed = sum(1 for r in results if not r.passed)
    suite = ET.Element(
        "testsuite",
        {
            "name": "recette",
            "tests": str(len(results)),
            "failures": str(failed),
            "errors": "0",
            "skipped": "0",
            "time": f"{sum(r.duration for r in results):.3f}",
        },
    )
    for result in results:
        scenario = result.scenario
        case = ET.SubElement(
            suite,
            "testcase",
            {
                "classname": scenario.path.stem,
                "name": f"{scenario.id}: {scenario.title}",
                "time": f"{result.duration:.3f}",
                "file": str(scenario.path),
                "line": str(scenario.line),
            },
        )
        if result.passed:
            continue
        failure = result.failure
        element = ET.SubElement(
            case,
            "failure",
            {
                "message": _failure_headline(result),
                "type": failure.kind if failure else "failure",
            },
        )
        if failure is not None:
            lines = [
                f"{scenario.path}:{failure.step_line}: {failure.message}",
                f"expected {failure.kind} {failure.logical} matching: {_json(failure.expected)}",
                _seen_title(failure),
                *(_json(e) for e in failure.seen),
            ]
            element.text = "\n".join(lines)
    ET.indent(suite)
    path.write_bytes(ET.tostring(suite, encoding="utf-8", xml_declaration=True))


def _summary(results: Sequence[ScenarioResult]) -> tuple[int, int, int]:
    passed = sum(1 for r in results if r.passed)
    return len(results), passed, len(results) - passed


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def write_markdown(results: Sequence[ScenarioResult], cov: Coverage, path: Path) -> None:
    run, passed, failed = _summary(results)
    out = [
        "# Recette campaign report",
        "",
        f"**{run}** scenarios run, **{passed}** passed, **{failed}** failed.",
        "",
        "## Anomalies by severity",
        "",
        "| severity | failed scenarios |",
        "|---|---|",
        *(f"| {s} | {n} |" for s, n in anomalies_by_severity(results).items()),
        "",
        "## Coverage",
        "",
        "| axis | covered | % | not exercised by any scenario |",
        "|---|---|---|---|",
    ]
    for axis in cov.axes:
        missing = ", ".join(axis.missing) or "—"
        out.append(
            f"| {axis.name} | {len(axis.covered)}/{len(axis.universe)} | {axis.percent:.0f}% "
            f"| {_md_cell(missing)} |"
        )
    out += [
        "",
        "## Scenarios",
        "",
        "| id | title | severity | result | time |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s = r.scenario
        verdict = "passed" if r.passed else "**FAILED**"
        out.append(
            f"| {_md_cell(s.id)} | {_md_cell(s.title)} | {s.severity} | {verdict} "
            f"| {r.duration:.1f} s |"
        )
    failures = [r for r in results if not r.passed]
    if failures:
        out += ["", "## Failures"]
    for r in failures:
        s = r.scenario
        out += [
            "",
            f"### {s.id}: {s.title} ({s.severity})",
            "",
            f"`{s.path}` — {_failure_headline(r)}",
        ]
        if r.failure is not None:
            f = r.failure
            out += [
                "",
                f"Expected `{f.kind} {f.logical}` (line {f.step_line}) matching:",
                "",
                "```json",
                json.dumps(f.expected, ensure_ascii=False, indent=2, default=str),
                "```",
                "",
                f"{_seen_title(f)}:",
                "",
                "```json",
                *(_json(e) for e in f.seen),
                "```",
            ]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#1d2430}
h1{margin-bottom:.2rem} h2{margin-top:2rem;border-bottom:1px solid #d0d7de}
.tiles{display:flex;gap:1rem;flex-wrap:wrap}
.tile{border:1px solid #d0d7de;border-radius:8px;padding:.8rem 1.2rem;min-width:8rem}
.tile b{display:block;font-size:2rem}
.ok{color:#1a7f37} .ko{color:#cf222e}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #d0d7de;padding:.3rem .6rem;
text-align:left;vertical-align:top}
th{background:#f6f8fa}
.bar{background:#eaeef2;width:10rem;height:.8rem;border-radius:4px;display:inline-block}
.bar span{background:#1a7f37;height:100%;display:block;border-radius:4px}
pre{background:#f6f8fa;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.failure{border-left:4px solid #cf222e;padding-left:1rem;margin:1rem 0}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def write_html(results: Sequence[ScenarioResult], cov: Coverage, path: Path) -> None:
    """One self-contained HTML file with the steering indicators (no script, no external asset)."""
    run, passed, failed = _summary(results)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="fr"><head><meta charset="utf-8">',
        "<title>Recette CCI</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Recette campaign report</h1>",
        '<div class="tiles">',
        f'<div class="tile">scenarios run<b>{run}</b></div>',
        f'<div class="tile ok">passed<b>{passed}</b></div>',
        f'<div class="tile {"ko" if failed else "ok"}">failed<b>{failed}</b></div>',
        "</div>",
        "<h2>Anomalies by severity</h2>",
        "<table><tr><th>severity</th><th>failed scenarios</th></tr>",
    ]
    for severity, count in anomalies_by_severity(results).items():
        css = ' class="ko"' if count else ""
        parts.append(f"<tr><td>{_e(severity)}</td><td{css}>{count}</td></tr>")
    parts += [
        "</table>",
        "<h2>Coverage</h2>",
        "<table><tr><th>axis</th><th>covered</th><th></th><th>not exercised by any scenario</th>"
        "</tr>",
    ]
    for axis in cov.axes:
        parts.append(
            f"<tr><td>{_e(axis.name)}</td>"
            f"<td>{len(axis.covered)}/{len(axis.universe)} ({axis.percent:.0f}%)</td>"
            f'<td><span class="bar"><span style="width:{axis.percent:.0f}%"></span></span></td>'
            f"<td>{_e(', '.join(axis.missing) or '—')}</td></tr>"
        )
    parts += [
        "</table>",
        "<h2>Scenarios</h2>",
        "<table><tr><th>id</th><th>title</th><th>severity</th><th>file</th><th>result</th>"
        "<th>time</th></tr>",
    ]
    for r in results:
        s = r.scenario
        verdict = '<td class="ok">passed</td>' if r.passed else '<td class="ko">FAILED</td>'
        parts.append(
            f"<tr><td>{_e(s.id)}</td><td>{_e(s.title)}</td><td>{_e(s.severity)}</td>"
            f"<td>{_e(s.path.name)}</td>{verdict}<td>{r.duration:.1f} s</td></tr>"
        )
    parts.append("</table>")
    failures = [r for r in results if not r.passed]
    if failures:
        parts.append("<h2>Failures</h2>")
    for r in failures:
        s = r.scenario
        parts += [
            '<div class="failure">',
            f"<h3>{_e(s.id)}: {_e(s.title)} ({_e(s.severity)})</h3>",
            f"<p>{_e(s.path)} — {_e(_failure_headline(r))}</p>",
        ]
        if r.failure is not None:
            f = r.failure
            expected = json.dumps(f.expected, ensure_ascii=False, indent=2, default=str)
            parts += [
                f"<p>Expected <code>{_e(f.kind)} {_e(f.logical)}</code> "
                f"(line {f.step_line}) matching:</p>",
                f"<pre>{_e(expected)}</pre>",
                f"<p>{_e(_seen_title(f))}:</p>",
                f"<pre>{_e(chr(10).join(_json(e) for e in f.seen)) or '(none)'}</pre>",
            ]
        parts.append("</div>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")


def write_reports(results: Sequence[ScenarioResult], directory: Path) -> dict[str, Path]:
    """Write `junit.xml`, `report.md` and `report.html` into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    cov = coverage(results)
    paths = {
        "junit": directory / "junit.xml",
        "markdown": directory / "report.md",
        "html": directory / "report.html",
    }
    write_junit(results, paths["junit"])
    write_markdown(results, cov, paths["markdown"])
    write_html(results, cov, paths["html"])
    return paths
