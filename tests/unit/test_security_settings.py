"""Kafka credentials in the settings: from the environment or a file, never shown, and the
PLAINTEXT configuration unchanged when there are none."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import faust
import pytest
import typer
from faust.types.auth import AuthProtocol, SASLMechanism
from pydantic import ValidationError

from streams.app import make_app
from streams.cli import app as cli_app
from streams.cli import main
from streams.config import Settings

SECRET = "s3cr3t-Pa55word"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "KAFKA_BOOTSTRAP",
        "CCI_SECURITY_PROTOCOL",
        "CCI_SASL_MECHANISM",
        "CCI_SASL_USERNAME",
        "CCI_SASL_PASSWORD",
        "CCI_SASL_PASSWORD_FILE",
        "CCI_SSL_CAFILE",
        "CCI_FUSED_ASSESSMENT",
    ):
        monkeypatch.delenv(name, raising=False)


def secure_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    monkeypatch.setenv("CCI_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CCI_SASL_USERNAME", "ns-intake")
    for name, value in extra.items():
        monkeypatch.setenv(name, value)


def test_plaintext_clients_get_the_bootstrap_servers_only() -> None:
    settings = Settings()
    assert settings.security_protocol == "PLAINTEXT"
    assert settings.kafka_client() == {"bootstrap.servers": "127.0.0.1:9092"}


def test_the_password_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secure_env(monkeypatch, CCI_SASL_PASSWORD=SECRET, CCI_SSL_CAFILE="/etc/ca.pem")
    assert Settings().kafka_client() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "ns-intake",
        "sasl.password": SECRET,
        "ssl.ca.location": "/etc/ca.pem",
    }


def test_the_password_file_wins_over_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "intake.password"
    path.write_text(SECRET + "\n")  # as `echo` or a mounted secret leaves it
    secure_env(monkeypatch, CCI_SASL_PASSWORD="stale", CCI_SASL_PASSWORD_FILE=str(path))
    settings = Settings()
    assert settings.sasl_password is not None
    assert settings.sasl_password.get_secret_value() == SECRET
    assert settings.kafka_client()["sasl.password"] == SECRET
    assert "ssl.ca.location" not in settings.kafka_client()  # the system's CAs


def test_the_password_is_never_shown(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "p"
    path.write_text(SECRET)
    secure_env(monkeypatch, CCI_SASL_PASSWORD_FILE=str(path))
    settings = Settings()
    for shown in (
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        json.dumps(settings.model_dump(mode="json")),
    ):
        assert SECRET not in shown


def test_sasl_without_a_password_is_refused_without_quoting_the_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CCI_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("CCI_SASL_PASSWORD", SECRET)  # but no user name
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "CCI_SASL_USERNAME" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_an_unreadable_password_file_is_named_not_read(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secure_env(monkeypatch, CCI_SASL_PASSWORD_FILE=str(tmp_path / "missing"))
    with pytest.raises(ValidationError, match="missing: cannot be read"):
        Settings()


def test_the_cli_reports_a_missing_password_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CCI_SECURITY_PROTOCOL", "SASL_SSL")
    assert main(["tail", "declaration.accepted"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "CCI_SASL_USERNAME" in err


def test_a_plaintext_app_gets_no_credentials() -> None:
    app = make_app("intake", Settings(store="memory://"))
    assert app.conf.broker_credentials is None


def test_a_sasl_ssl_app_authenticates_with_scram_over_tls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secure_env(monkeypatch, CCI_SASL_PASSWORD=SECRET)
    app = make_app("intake", Settings(store="memory://"))
    credentials = app.conf.broker_credentials
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is AuthProtocol.SASL_SSL
    assert credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert (credentials.username, credentials.password) == ("ns-intake", SECRET)
    assert isinstance(credentials.ssl_context, ssl.SSLContext)
    assert credentials.ssl_context.check_hostname
    assert credentials.ssl_context.verify_mode is ssl.CERT_REQUIRED
    assert SECRET not in repr(credentials)


def test_no_command_takes_a_password_option() -> None:
    """Any local user can read a process's arguments: secrets never go there."""

    def options(command: Any) -> Iterator[str]:  # typer's own click, whose types it hides
        for param in command.params:
            yield from param.opts
        for sub in getattr(command, "commands", {}).values():
            yield from options(sub)

    found = list(options(typer.main.get_command(cli_app)))
    assert "--namespace" in found  # the walk does reach the commands
    assert not [o for o in found if any(w in o.lower() for w in ("password", "secret", "sasl"))]


def test_cci_acls_lists_every_principal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["acls", "--namespace", "ns1", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [p["user"] for p in listed] == [
        "ns1-decision",
        "ns1-duties",
        "ns1-intake",
        "ns1-risk",
        "ns1-tools",
    ]
    assert main(["acls", "--namespace", "ns1"]) == 0
    assert "User:ns1-intake" in capsys.readouterr().out


def test_cci_acls_follows_the_topology_of_the_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CCI_FUSED_ASSESSMENT", "true")
    assert main(["acls", "--namespace", "ns1", "--json"]) == 0
    listed = {p["user"]: p for p in json.loads(capsys.readouterr().out)}
    assert list(listed) == ["ns1-decision", "ns1-intake", "ns1-tools"]
    assessed = {
        tuple(rule["operations"])
        for rule in listed["ns1-decision"]["acls"]
        if rule["resource_name"] in ("ns1.risk.assessed", "ns1.duties.assessed")
    }
    assert assessed == {("WRITE", "DESCRIBE")}
    assert main(["acls", "--namespace", "ns1"]) == 0
    shown = capsys.readouterr().out
    assert "fused topology" in shown and "User:ns1-risk" not in shown


def test_cci_acls_creates_users_only_when_applying(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["acls", "--users-dir", str(tmp_path)]) == 2
    assert "--apply" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
