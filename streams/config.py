"""Settings of a node, from the environment (prefix `CCI_`), with `KAFKA_BOOTSTRAP` as the one
unprefixed name because every Kafka tool already knows it."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ROOT = Path(__file__).resolve().parent.parent
LOCAL_BOOTSTRAP = "127.0.0.1:9092"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CCI_", extra="ignore", populate_by_name=True)

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

    def kafka_client(self) -> dict[str, str]:
        """librdkafka settings every client of this node starts from."""
        return {"bootstrap.servers": self.bootstrap}

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
