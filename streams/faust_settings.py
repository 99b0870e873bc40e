"""The Faust settings every app shares that talks to the namespace's broker as a stage does.

Apart from `streams.app`, which replaces parts of Faust's Kafka transport for the whole process
when imported: the benchmark's at-least-once ceiling runs a bare Faust with these settings.
"""

from __future__ import annotations

import ssl
from typing import Any

import faust
from faust.types.auth import SASLMechanism

from streams.config import Settings


def broker_credentials(settings: Settings) -> dict[str, Any]:
    """Faust's `broker_credentials`, when the broker wants them: nothing at all otherwise, so
    that a PLAINTEXT app is configured exactly as before security existed."""
    if settings.security_protocol != "SASL_SSL":
        return {}
    assert settings.sasl_username is not None and settings.sasl_password is not None
    cafile = None if settings.ssl_cafile is None else str(settings.ssl_cafile)
    return {
        "broker_credentials": faust.SASLCredentials(
            username=settings.sasl_username,
            password=settings.sasl_password.get_secret_value(),
            mechanism=SASLMechanism(settings.sasl_mechanism),
            # A context makes the credentials SASL_SSL; it verifies the broker's certificate
            # and name against `cafile` (the system's CAs when unset).
            ssl_context=ssl.create_default_context(cafile=cafile),
        )
    }


def client_settings(settings: Settings, app_id: str) -> dict[str, Any]:
    """The Faust settings of every app that talks to the namespace's broker like a stage does:
    the stages, and the benchmark's framework ceilings, which must differ from a stage only in
    what they measure."""
    return dict(
        broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
        topic_partitions=settings.partitions,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        # A killed worker's partitions move after the session timeout: keep it short, the
        # broker is local or in the same data centre.
        broker_session_timeout=10,
        broker_heartbeat_interval=1,
        # Each commit closes the stage's transactions; outputs are visible to read_committed
        # readers only then, so this bounds the latency a stage adds.
        broker_commit_interval=settings.commit_interval,
        producer_linger=0.005,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        datadir=str(settings.state_dir / settings.namespace / app_id),
        autodiscover=False,
        # The logs carry each message's origin; personal data stays out of them.
        worker_redirect_stdouts=False,
        **broker_credentials(settings),
    )
