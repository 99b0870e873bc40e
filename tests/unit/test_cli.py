"""The `cci` command line as a user meets it: exit codes, output, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams.cli import main
from streams.config import Settings

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_validate_accepts_a_declaration_written_by_hand(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "validate", str(FIXTURES / "declaration-valid.json"))
    assert (code, json.loads(out)) == (0, {"valid": True, "errors": []})


def test_validate_reports_every_failed_rule_with_its_pointer(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "validate", str(FIXTURES / "declaration-invalid.json"))
    result = json.loads(out)
    assert code == 1 and result["valid"] is False
    assert [(e["code"], e["pointer"]) for e in result["errors"]] == [
        ("R010", "/lrn"),
        ("R021", "/declarant/eori"),
        ("R042", "/presentationOffice"),
        ("R061", "/goodsItems/1/sequenceNumber"),
        ("R062", "/goodsItems/0/commodityCode"),
        ("R063", "/goodsItems/1/procedureCode"),
        ("R065", "/goodsItems/0/grossMass"),
        ("R069", "/goodsItems/0/commodityCode"),
    ]
    assert all(e["message"] for e in result["errors"])


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"lrn": "X"}', "required field is missing"),
        ('{"lrn": 5}', "/lrn: expected a string"),
    ],
)
def test_validate_says_in_one_line_why_a_file_is_not_a_declaration(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "d.json"
    path.write_text(content)
    code, out, err = run(capsys, "validate", str(path))
    assert code == 2 and out == ""
    assert expected in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    "args",
    [
        ["validate", "/no/such/file.json"],
        ["generate", "--count", "many"],
        ["generate", "--invalid-share", "2"],
        ["generate", "--no-such-option"],
        ["publish", "no.such.event", "-"],
        ["tail", "no.such.event"],
        ["worker", "--stage", "nowhere"],
        ["bench", "profile", "--stage", "nowhere"],
        ["validate"],
    ],
)
def test_a_bad_argument_gets_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err


def test_generate_is_reproducible_with_a_seed_and_valid_by_default(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    first = run(capsys, "generate", "--count", "5", "--seed", "9")[1]
    second = run(capsys, "generate", "--count", "5", "--seed", "9")[1]
    other = run(capsys, "generate", "--count", "5", "--seed", "10")[1]
    assert first == second != other
    lines = first.splitlines()
    assert len(lines) == 5
    path = tmp_path / "one.json"
    path.write_text(lines[0])
    assert run(capsys, "validate", str(path))[0] == 0


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ["validate", "generate", "publish", "tail", "worker", "demo", "topics"]:
        code, out, _ = run(capsys, command, "--help")
        assert code == 0 and "Usage:" in out


def test_a_worker_refuses_to_start_on_a_wrong_reference_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = Path(__file__).resolve().parents[2] / "reference"
    for source in reference.glob("*.yaml"):
        (tmp_path / source.name).write_bytes(source.read_bytes())
    tariff = tmp_path / "tariff.yaml"
    tariff.write_text(tariff.read_text().replace('ergaOmnes: "4.7"', 'ergaOmnes: "4,7"'))
    monkeypatch.setenv("CCI_REFERENCE_DIR", str(tmp_path))
    code, _, err = run(capsys, "worker", "--stage", "decision")
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "tariff.yaml" in err and "9503" in err and "'4,7'" in err


SECURED = {"CCI_SECURITY_PROTOCOL": "SASL_SSL", "CCI_SASL_USERNAME": "u", "CCI_SASL_PASSWORD": "p"}


@pytest.mark.parametrize("stage", ["risk", "duties"])
@pytest.mark.parametrize("env", [{}, SECURED], ids=["plaintext", "sasl-ssl"])
def test_a_worker_the_fused_topology_does_not_run_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    stage: str,
    env: dict[str, str],
) -> None:
    monkeypatch.setenv("CCI_FUSED_ASSESSMENT", "true")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    code, out, err = run(capsys, "worker", "--stage", stage)
    assert code == 2 and out == ""
    assert "does not run with CCI_FUSED_ASSESSMENT" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("stage", ["intake", "decision", "all"])
def test_a_fused_worker_starts_on_a_secured_broker(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    """The fused topology has its own ACLs (streams.access): a worker of it goes on to reach
    the broker, which here is a stand-in that refuses, rather than refusing to start."""
    import streams.cli

    monkeypatch.setenv("CCI_FUSED_ASSESSMENT", "true")
    for name, value in SECURED.items():
        monkeypatch.setenv(name, value)
    reached: list[str] = []

    def no_broker(settings: Settings) -> None:
        reached.append(settings.security_protocol)
        streams.cli.fail("no broker in the unit tests")

    monkeypatch.setattr(streams.cli, "_require_broker", no_broker)
    code, out, err = run(capsys, "worker", "--stage", stage)
    assert reached == ["SASL_SSL"]
    assert (code, out) == (2, "") and "no broker in the unit tests" in err


def test_assess_prints_the_risk_and_duties_of_one_declaration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(capsys, "assess", str(FIXTURES / "declaration-valid.json"))
    result = json.loads(out)
    assert code == 0 and set(result) == {"risk", "duties"}
    assert result["risk"] == {"control": "NONE", "matchedProfiles": [], "randomlySelected": False}
    assert result["duties"]["totalVat"] == "2418.94" and "mrn" not in result["duties"]


def test_assess_refuses_an_invalid_declaration_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "assess", str(FIXTURES / "declaration-invalid.json"))
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1 and "R021 /declarant/eori" in err


def test_recette_run_refuses_an_invalid_campaign_naming_the_file_and_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "a.yaml").write_text(
        "id: CCI-X-001\ntitle: t\nseverity: majeure\nsteps:\n  - send: declaration.lodgedd\n"
        "    value: {}\n"
    )
    code, out, err = run(capsys, "recette", "run", str(tmp_path))
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert f"{tmp_path / 'a.yaml'}:5:" in err and "declaration.lodgedd" in err
