"""Settings of a node, from the environment (prefix `CCI_`), with `KAFKA_BOOTSTRAP` as the one
unprefixed name because every Kafka tool already knows it.

Kafka credentials come from the environment or from files, never from the command line (any
local user can read a process's arguments): `CCI_SASL_USERNAME`, and the password in
`CCI_SASL_PASSWORD_FILE` or else `CCI_SASL_PASSWORD`. The file wins when both are set: it is
what an orchestrator mounts from its secret store and can rotate, while a variable may be a
leftover inherited from a parent shell.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
LOCAL_BOOTSTRAP = "127.0.0.1:9092"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CCI_",
        extra="ignore",
        populate_by_name=True,
        # A validation error would otherwise quote the input, the password included.
        hide_input_in_errors=True,
    )

    bootstrap: str = Field(
        default=LOCAL_BOOTSTRAP,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP", "CCI_BOOTSTRAP"),
        description="Kafka bootstrap servers, host:port[,host:port]",
    )
    namespace: str = Field(default="cci", description="prefix of every topic and consumer group")
    country: str = Field(default="FR", description="ISO country of this SCO node")
    partitions: int = Field(default=6, ge=1, le=1296)
    replication: int = Field(default=1, ge=1)
    reference_dir: Path = ROOT / "reference"
    schemas_dir: Path = ROOT / "schemas"
    state_dir: Path = ROOT / ".local" / "state"
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=1, le=65535, description="first stage's HTTP port")
    store: str = Field(default="rocksdb://", description="Faust table store URL")
    commit_interval: float = Field(
        default=0.5, gt=0, description="seconds between a stage's transaction commits"
    )
    idle_commit: float = Field(
        default=0.0,
        ge=0,
        description="seconds after a stage has read all it was sent that it commits, without"
        " waiting for the commit interval; 0: at the commit interval only",
    )
    fetch_min_bytes: int = Field(
        default=1,
        ge=1,
        description="bytes of input a stage's fetch asks the broker to gather before it answers,"
        " for at most fetch_max_wait; 1: answered as soon as there is any",
    )
    fetch_max_wait: float = Field(
        default=1.5,
        gt=0,
        le=30,
        description="seconds the broker may hold a stage's fetch while it gathers fetch_min_bytes",
    )
    fused_assessment: bool = Field(
        default=False,
        description="risk and duties assessed by the decision stage, in the transaction that"
        " takes in the acceptance, instead of by stages of their own (docs/decisions.md,"
        " Topology)",
    )
    broker_probe_interval: float = Field(
        default=5.0, gt=0, description="seconds between a worker's checks that the broker answers"
    )
    cop_response_timeout: timedelta = Field(
        default=timedelta(hours=2),
        description="ISO 8601 duration the SCO waits for a COP risk result (spec §8), e.g. PT2H",
    )
    lapse_after: timedelta = Field(
        default=timedelta(days=30),
        description="ISO 8601 duration after acceptance when an unpresented type D lapses",
    )
    security_protocol: Literal["PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="PLAINTEXT, or SASL_SSL: SCRAM credentials over TLS"
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256"] = "SCRAM-SHA-512"
    sasl_username: str | None = Field(default=None, description="this node's Kafka principal")
    sasl_password: SecretStr | None = Field(
        default=None, description="its password; CCI_SASL_PASSWORD_FILE is read instead if set"
    )
    sasl_password_file: Path | None = Field(
        default=None, description="a file holding the password (trailing newline ignored)"
    )
    ssl_cafile: Path | None = Field(
        default=None, description="CA certificates (PEM) to trust; default: the system's"
    )

    @model_validator(mode="after")
    def _credentials(self) -> Settings:
        if self.sasl_password_file is not None:
            try:
                text = self.sasl_password_file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                # The reason only: the message must not carry any of the file's content.
                reason = getattr(exc, "strerror", None) or type(exc).__name__
                raise ValueError(
                    f"sasl_password_file {self.sasl_password_file}: cannot be read ({reason})"
                ) from None
            self.sasl_password = SecretStr(text.rstrip("\r\n"))
        if self.security_protocol == "SASL_SSL" and not (
            self.sasl_username and self.sasl_password and self.sasl_password.get_secret_value()
        ):
            raise ValueError(
                "SASL_SSL needs CCI_SASL_USERNAME and a password "
                "(CCI_SASL_PASSWORD_FILE or CCI_SASL_PASSWORD)"
            )
        return self

    def kafka_client(self) -> dict[str, str]:
        """librdkafka settings every client of this node starts from."""
        config = {"bootstrap.servers": self.bootstrap}
        if self.security_protocol == "SASL_SSL":
            assert self.sasl_username is not None and self.sasl_password is not None
            config.update(
                {
                    "security.protocol": "SASL_SSL",
                    "sasl.mechanisms": self.sasl_mechanism,
                    "sasl.username": self.sasl_username,
                    "sasl.password": self.sasl_password.get_secret_value(),
                }
            )
            if self.ssl_cafile is not None:
                config["ssl.ca.location"] = str(self.ssl_cafile)
        return config

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
        if not value or not set(value) <= allowed:
            raise ValueError("namespace must be letters, digits, '-' or '_'")
        return value

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if len(value) != 2 or not value.isalpha() or not value.isupper():
            raise ValueError("country must be two capital letters (ISO 3166-1 alpha-2)")
        return value


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings()
