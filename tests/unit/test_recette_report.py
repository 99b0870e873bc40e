"""Recette reports: coverage, anomalies by severity, JUnit XML, Markdown and self-contained HTML."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from streams.recette.model import Expect, Scenario, Send
from streams.recette.report import (
    DECISION_PATHS,
    MESSAGE_CODES,
    RULE_CODES,
    SEEN_CAP,
    ScenarioResult,
    StepFailure,
    anomalies_by_severity,
    coverage,
    decision_paths,
    write_reports,
)

Events = list[tuple[str, dict[str, Any]]]


def scenario(sid: str, severity: str = "majeure", title: str = "a title") -> Scenario:
    steps: list[Send | Expect] = [
        Send("declaration.lodged", {"lrn": "L"}, 6),
        Expect("declaration.accepted", {"lrn": "L"}, 8),
    ]
    return Scenario(sid, title, severity, list(steps), Path(f"/campaign/{sid.lower()}.yaml"), 1)


def notification(code: str, mrn: str | None, errors: list[str] | None = None) -> dict[str, Any]:
    return {
        "messageCode": code,
        "mrn": mrn,
        "lrn": "L",
        "errors": None if errors is None else [{"code": c, "pointer": "/"} for c in errors],
    }


def accepted(mrn: str, kind: str = "A") -> tuple[str, dict[str, Any]]:
    return (
        "declaration.accepted",
        {"mrn": mrn, "declaration": {"additionalDeclarationType": kind}},
    )


def test_decision_paths() -> None:
    assert decision_paths([]) == set()
    assert decision_paths([("declaration.rejected", {"errors": [{"code": "R021"}]})]) == {
        "rejected"
    }
    released_plain: Events = [
        accepted("M1"),
        ("cop.forwarded", {"mrn": "M1"}),
        ("cop.risk-result", {"mrn": "M1", "control": "NONE"}),
        ("declaration.released", {"mrn": "M1"}),
    ]
    assert decision_paths(released_plain) == {"released without control"}
    after_control: Events = [
        accepted("M2"),
        ("cop.forwarded", {"mrn": "M2"}),
        ("cop.risk-result", {"mrn": "M2", "control": "PHYSICAL"}),
        ("trader.notification", notification("IE460", "M2")),
        ("declaration.released", {"mrn": "M2"}),
    ]
    assert decision_paths(after_control) == {"released after control A1"}
    # UNDER_CONTROL in the status history counts as controlled too.
    via_status: Events = [
        ("declaration.status", {"mrn": "M3", "state": "RELEASED", "history": [
            {"state": "ACCEPTED"}, {"state": "UNDER_CONTROL"}, {"state": "RELEASED"}
        ]}),
        ("declaration.released", {"mrn": "M3"}),
    ]  # fmt: skip
    assert decision_paths(via_status) == {"released after control A1"}
    timed_out: Events = [
        accepted("M4", "D"),
        ("cop.forwarded", {"mrn": "M4"}),
        ("cop.goods-presented", {"mrn": "M4"}),
        ("clock.tick", {}),
        ("declaration.released", {"mrn": "M4"}),
    ]
    assert decision_paths(timed_out) == {
        "released without control",
        "COP timeout",
        "pre-lodged presented",
    }
    # Without recorded ticks nothing proves the COP answer is absent rather than unrecorded.
    assert "COP timeout" not in decision_paths(timed_out[:3] + timed_out[4:])
    others: Events = [
        ("declaration.not-released", {"mrn": "M5", "reason": "CONTROL_NOT_SATISFACTORY"}),
        ("declaration.not-released", {"mrn": "M6", "reason": "LAPSED"}),
        ("declaration.invalidated", {"mrn": "M7", "reason": "x"}),
        ("trader.notification", notification("IE456", "M8", ["R095"])),
        ("dead-letter", {"stage": "decision", "reason": "unknown-mrn"}),
        accepted("M9", "D"),  # pre-lodged but never presented: not the presented path
    ]
    assert decision_paths(others) == {
        "not released B1",
        "lapsed",
        "invalidated",
        "invalidation refused R095",
        "dead letter",
        "unknown MRN",
    }
    assert decision_paths([("dead-letter", {"reason": "undecodable"})]) == {"dead letter"}


def results() -> list[ScenarioResult]:
    passed_events: Events = [
        ("declaration.rejected", {"lrn": "L", "errors": [{"code": "R021"}, {"code": "R010"}]}),
        ("trader.notification", notification("IE428", "M1")),
        accepted("M1"),
        ("declaration.released", {"mrn": "M1"}),
        ("trader.notification", notification("IE429", "M1")),
    ]
    seen = [{"lrn": f"<script>alert({i})</script>", "errors": []} for i in range(SEEN_CAP + 5)]
    failure = StepFailure(
        index=1,
        step_line=8,
        kind="expect",
        logical="declaration.rejected",
        expected={"lrn": "L", "errors": [{"code": "R099"}]},
        seen=seen,
        message="no declaration.rejected matched within 20s: /errors: expected 1 items, got 0",
    )
    failed_events: Events = [
        ("declaration.rejected", seen[0]),
        ("trader.notification", notification("IE456", None, ["R060", "R999"])),
    ]
    return [
        ScenarioResult(scenario("CCI-OK-001", "bloquante"), True, 1.5, None, passed_events),
        ScenarioResult(
            scenario("CCI-KO-002", "critique", "Title <b>&</b>"),
            False,
            20.25,
            failure,
            failed_events,
        ),
        ScenarioResult(
            scenario("CCI-KO-003", "critique"),
            False,
            0.5,
            StepFailure(0, 6, "error", "declaration.lodged", {}, [], "broker down"),
        ),
        ScenarioResult(scenario("CCI-KO-004", "mineure"), False, 0.1, None),
    ]


def test_step_failure_caps_seen_events() -> None:
    failure = results()[1].failure
    assert failure is not None
    assert (len(failure.seen), failure.seen_total) == (SEEN_CAP, SEEN_CAP + 5)


def test_coverage_from_events_of_all_scenarios() -> None:
    cov = coverage(results())
    assert cov.rules.covered == ("R010", "R021", "R060")  # R999 is not in the catalogue
    assert len(cov.rules.universe) == len(RULE_CODES) == 26
    assert "R095" in cov.rules.missing and "R021" not in cov.rules.missing
    assert round(cov.rules.percent, 2) == round(300 / 26, 2)
    assert cov.messages.covered == ("IE428", "IE456", "IE429")
    assert cov.messages.missing == ("IE460", "IE451", "IE410")
    assert cov.messages.percent == 50.0
    assert cov.paths.covered == ("rejected", "released without control")
    assert len(cov.paths.missing) == len(DECISION_PATHS) - 2
    assert len(MESSAGE_CODES) == 6
    assert cov.summary() == (
        "rule codes 3/26 (12%), message codes 3/6 (50%), decision paths 2/11 (18%)"
    )
    assert cov.missing()["message codes"] == ["IE460", "IE451", "IE410"]
    assert set(cov.missing()) == {"rule codes", "message codes", "decision paths"}


def test_full_coverage_has_nothing_missing() -> None:
    events: Events = [
        ("declaration.rejected", {"errors": [{"code": c} for c in RULE_CODES]}),
        *(("trader.notification", notification(code, "M")) for code in MESSAGE_CODES),
    ]
    cov = coverage([ScenarioResult(scenario("X"), True, 0.0, None, events)])
    assert set(cov.missing()) == {"decision paths"}
    assert cov.rules.percent == 100.0


def test_anomalies_by_severity() -> None:
    assert anomalies_by_severity(results()) == {
        "bloquante": 0,
        "critique": 2,
        "majeure": 0,
        "mineure": 1,
    }


def test_junit_xml(tmp_path: Path) -> None:
    paths = write_reports(results(), tmp_path / "out")
    assert paths == {
        "junit": tmp_path / "out" / "junit.xml",
        "markdown": tmp_path / "out" / "report.md",
        "html": tmp_path / "out" / "report.html",
    }
    suite = ET.parse(paths["junit"]).getroot()
    assert suite.tag == "testsuite"
    assert (suite.get("name"), suite.get("tests"), suite.get("failures")) == ("recette", "4", "3")
    assert suite.get("time") == "22.350"
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == [
        "cci-ok-001",
        "cci-ko-002",
        "cci-ko-003",
        "cci-ko-004",
    ]
    assert cases[1].get("name") == "CCI-KO-002: Title <b>&</b>"
    assert cases[1].get("time") == "20.250"
    assert cases[0].find("failure") is None
    failure = cases[1].find("failure")
    assert failure is not None and failure.text is not None
    assert failure.get("message", "").startswith("step 2 (line 8) expect declaration.rejected:")
    assert '"R099"' in failure.text
    assert "declaration.rejected events seen: 25, first 20 shown" in failure.text
    assert failure.text.count("<script>alert(") == SEEN_CAP
    error = cases[2].find("failure")
    assert error is not None and error.get("type") == "error"
    bare = cases[3].find("failure")
    assert bare is not None and bare.get("message") == "failed"


def test_markdown(tmp_path: Path) -> None:
    text = write_reports(results(), tmp_path)["markdown"].read_text()
    assert "**4** scenarios run, **1** passed, **3** failed." in text
    assert "| critique | 2 |" in text
    assert "| message codes | 3/6 | 50% | IE460, IE451, IE410 |" in text
    assert "### CCI-KO-002: Title <b>&</b> (critique)" in text
    assert '"R099"' in text


def test_html_is_self_contained_and_escaped(tmp_path: Path) -> None:
    text = write_reports(results(), tmp_path)["html"].read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text  # event values hold "<script>": escaped, and no script of ours
    assert "<link" not in text and "src=" not in text and "http" not in text
    assert "&lt;script&gt;alert(0)&lt;/script&gt;" in text
    assert "Title &lt;b&gt;&amp;&lt;/b&gt;" in text
    assert "<style>" in text
    for indicator in (
        "scenarios run<b>4</b>",
        "passed<b>1</b>",
        "failed<b>3</b>",
        '<td>critique</td><td class="ko">2</td>',
        "<td>bloquante</td><td>0</td>",
        "3/6 (50%)",
        "IE460, IE451, IE410",
        "invalidation refused R095",
        "line 8",
        "&quot;R099&quot;",
        "declaration.rejected events seen: 25, first 20 shown",
    ):
        assert indicator in text, indicator
