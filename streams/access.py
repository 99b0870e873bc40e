"""Who may do what on the cluster: each stage's principal and its ACLs, derived from what the
running stages read and write (`streams.topics.topology`) and the namespace, so that the stage's
code and its rights cannot drift apart. One source of truth for the local secure broker (`cci
acls --apply`) and for the cluster's own user definitions (`streams.k8s`).

The topology decides who holds which right. In the four stages (`STAGES`) the risk and duty
stages write `risk.assessed` and `duties.assessed` and the decision stage reads them; in the
fused topology (`Settings.fused_assessment`) the decision stage writes them and reads them no
more, and the risk and duty stages, which do not run, have no principal at all.

Principals, one per running stage and namespace, plus one for the tools:

- `User:<namespace>-<stage>`, the stage's consumer group id (`group_id`), which is also Faust's
  app id: the prefix of its internal topics and of its transactional ids. It may
  - read (READ, DESCRIBE) the topics the stage reads, and nothing else;
  - write (WRITE, DESCRIBE) the topics the stage writes and its own dead-letter topic;
  - use its consumer group (READ);
  - create, read and write Faust's own topics, by name: the changelogs of the stage's tables
    (`changelog_topic`, declared with the stage) and its leader topic
    (`<group>-__assignor-__leader`);
  - use the transactional ids `<group>-...` of its exactly-once producers
    (`<group>-<topic group>-<partition>`), a prefix since they follow the partitions.
  No IDEMPOTENT_WRITE on the cluster: since Kafka 3.0 a WRITE on any topic allows an
  idempotent producer.
- `User:<namespace>-tools`, the gateway and the command-line tools (`cci publish`, `cci
  clock`, `cci simulate-cop`, `cci tail`, `cci capture`): writes the inbound events, those no
  stage writes (lodged declarations, invalidation requests, the COP's presentations and risk
  results, control results, clock ticks); reads every event topic of the namespace and the
  dead letters, not the stages' table changelogs; uses the COP simulator's group and the
  throw-away groups of `kafka_io.reader`. The same in either topology: the namespace has the
  same topics, and `cci tail dead-letter` reads the dead letters of all four stages, those a
  namespace kept from before a change of topology included.
- `User:admin` (the broker's super user) creates topics and users and sets these ACLs; a
  replay into a secured namespace, which writes the stages' topics, runs as admin too.

The transactional-id prefix `<namespace>-<stage>-` also covers the ids of a namespace whose
name starts with it (namespace `cci-intake-x` for the intake of namespace `cci`), which could
then fence that namespace's producers: do not name namespaces so.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streams.cop_simulator import GROUP as SIMULATOR_GROUP
from streams.kafka_io import TOOL_GROUP_PREFIX
from streams.topics import (
    EVENTS,
    STAGES,
    Stage,
    dead_letter_topic,
    group_id,
    stage_changelogs,
    topic_name,
    topology,
)

ResourceType = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID"]
PatternType = Literal["LITERAL", "PREFIXED"]
Operation = Literal["READ", "WRITE", "CREATE", "DESCRIBE"]

TOOLS = "tools"
SCRAM_ITERATIONS = 8192  # Kafka's minimum is 4096


@dataclass(frozen=True, order=True)
class Acl:
    """One ALLOW rule, from any host: `principal` may do `operation` on the resources of
    `resource_type` named `resource_name` (LITERAL) or starting with it (PREFIXED)."""

    principal: str
    resource_type: ResourceType
    pattern_type: PatternType
    resource_name: str
    operation: Operation


@dataclass(frozen=True)
class Principal:
    """A user of the cluster: its SCRAM user name, what it is (a stage's name, or `tools`),
    and its ACLs."""

    user: str
    role: str
    acls: tuple[Acl, ...]

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


@dataclass(frozen=True)
class Rule:
    """The ACLs of one principal on one resource pattern, operations together (the shape of
    a Strimzi KafkaUser ACL)."""

    principal: str
    resource_type: ResourceType
    pattern_type: PatternType
    resource_name: str
    operations: tuple[Operation, ...]


def _known(stage: str) -> str:
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; stages: {', '.join(sorted(STAGES))}")
    return stage


def stage_user(namespace: str, stage: str) -> str:
    return group_id(namespace, _known(stage))


def tools_user(namespace: str) -> str:
    return f"{namespace}-{TOOLS}"


def inbound_events(fused_assessment: bool = False) -> tuple[str, ...]:
    """The events that come from outside the pipeline: no running stage writes them."""
    written = {logical for stage in topology(fused_assessment).values() for logical in stage.writes}
    return tuple(logical for logical in EVENTS if logical not in written)


def running_stage(stage: str, fused_assessment: bool = False) -> Stage:
    """What `stage` reads and writes in the topology chosen; KeyError for a stage that does not
    run there, so that no right is ever derived for it."""
    running = topology(fused_assessment)
    if _known(stage) not in running:
        raise KeyError(
            f"stage {stage!r} does not run in the fused topology; stages: "
            f"{', '.join(sorted(running))}"
        )
    return running[stage]


def leader_topic(namespace: str, stage: str) -> str:
    """The topic Faust's leader assignor creates for the stage's app."""
    return f"{group_id(namespace, stage)}-__assignor-__leader"


def event_topics(namespace: str) -> list[str]:
    """The topics of the events and the dead letters: what flows, without the stages' state."""
    # Every stage's dead letters, whichever run: the namespace has them all (`all_topics`).
    return [
        *(topic_name(namespace, logical) for logical in EVENTS),
        *(dead_letter_topic(namespace, stage) for stage in STAGES),
    ]


def _grant(
    principal: str,
    resource_type: ResourceType,
    name: str,
    operations: Iterable[Operation],
    pattern_type: PatternType = "LITERAL",
) -> list[Acl]:
    return [Acl(principal, resource_type, pattern_type, name, op) for op in operations]


def stage_acls(namespace: str, stage: str, fused_assessment: bool = False) -> tuple[Acl, ...]:
    """Everything the stage's worker needs in the topology chosen, and nothing more (see the
    module docstring)."""
    spec = running_stage(stage, fused_assessment)
    user = f"User:{stage_user(namespace, stage)}"
    group = group_id(namespace, stage)
    acls: set[Acl] = set()
    for logical in spec.reads:
        acls.update(_grant(user, "TOPIC", topic_name(namespace, logical), ("READ", "DESCRIBE")))
    for topic in (
        *(topic_name(namespace, logical) for logical in spec.writes),
        dead_letter_topic(namespace, stage),
    ):
        acls.update(_grant(user, "TOPIC", topic, ("WRITE", "DESCRIBE")))
    acls.update(_grant(user, "GROUP", group, ("READ",)))
    # Faust declares its topics at start-up: CREATE, though the admin creates the changelogs
    # with the namespace's topics (`all_topics`).
    for topic in (*stage_changelogs(namespace, stage), leader_topic(namespace, stage)):
        acls.update(_grant(user, "TOPIC", topic, ("CREATE", "READ", "WRITE", "DESCRIBE")))
    acls.update(_grant(user, "TRANSACTIONAL_ID", f"{group}-", ("WRITE", "DESCRIBE"), "PREFIXED"))
    return tuple(sorted(acls))


def tools_acls(namespace: str, fused_assessment: bool = False) -> tuple[Acl, ...]:
    user = f"User:{tools_user(namespace)}"
    acls: set[Acl] = set()
    for logical in inbound_events(fused_assessment):
        acls.update(_grant(user, "TOPIC", topic_name(namespace, logical), ("WRITE",)))
    for topic in event_topics(namespace):
        acls.update(_grant(user, "TOPIC", topic, ("READ", "DESCRIBE")))
    acls.update(_grant(user, "GROUP", group_id(namespace, SIMULATOR_GROUP), ("READ",)))
    acls.update(_grant(user, "GROUP", TOOL_GROUP_PREFIX, ("READ",), "PREFIXED"))
    return tuple(sorted(acls))


def principals(namespace: str, fused_assessment: bool = False) -> list[Principal]:
    """Every principal of the namespace in the topology chosen: its running stages in name
    order, then the tools."""
    return [
        *(
            Principal(
                stage_user(namespace, stage),
                stage,
                stage_acls(namespace, stage, fused_assessment),
            )
            for stage in sorted(topology(fused_assessment))
        ),
        Principal(tools_user(namespace), TOOLS, tools_acls(namespace, fused_assessment)),
    ]


def all_acls(namespace: str, fused_assessment: bool = False) -> list[Acl]:
    return [acl for p in principals(namespace, fused_assessment) for acl in p.acls]


_OPERATION_ORDER: dict[str, int] = {"CREATE": 0, "READ": 1, "WRITE": 2, "DESCRIBE": 3}


def rules(acls: Iterable[Acl]) -> list[Rule]:
    """The ACLs with the operations on the same resource pattern together, in a stable order."""
    grouped: dict[tuple[str, ResourceType, PatternType, str], set[Operation]] = {}
    for acl in acls:
        key = (acl.principal, acl.resource_type, acl.pattern_type, acl.resource_name)
        grouped.setdefault(key, set()).add(acl.operation)
    return [
        Rule(*key, tuple(sorted(ops, key=_OPERATION_ORDER.__getitem__)))
        for key, ops in sorted(grouped.items())
    ]


# --- on the cluster -------------------------------------------------------------------------


def acl_bindings(acls: Iterable[Acl]) -> list[Any]:
    # The documented import path; the package does not mark these names as exported.
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    return [
        AclBinding(
            ResourceType[acl.resource_type],
            acl.resource_name,
            ResourcePatternType[acl.pattern_type],
            acl.principal,
            "*",
            AclOperation[acl.operation],
            AclPermissionType.ALLOW,
        )
        for acl in acls
    ]


def apply_acls(admin: Any, acls: Sequence[Acl], timeout: float = 30.0) -> int:
    """Create the ACLs (those already there are left as they are); return how many were sent.
    Raises KafkaException when the broker refuses any, e.g. for a principal that is not
    a super user."""
    bindings = acl_bindings(acls)
    if not bindings:
        return 0
    for future in admin.create_acls(bindings, request_timeout=timeout).values():
        future.result()
    return len(bindings)


def user_passwords(directory: Path, users: Iterable[str]) -> dict[str, str]:
    """Each user's password, from `directory/<user>.password`; a new random one is written
    there first, readable by its owner only, for a user that has none."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    passwords: dict[str, str] = {}
    for user in users:
        path = directory / f"{user}.password"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(secrets.token_urlsafe(24))
        passwords[user] = path.read_text(encoding="utf-8").rstrip("\r\n")
    return passwords


def upsert_users(
    admin: Any,
    passwords: Mapping[str, str],
    mechanism: str = "SCRAM-SHA-512",
    timeout: float = 30.0,
) -> list[str]:
    """Create each user's SCRAM credential, or replace it with this password; return the users."""
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    info = ScramCredentialInfo(ScramMechanism[mechanism.replace("-", "_")], SCRAM_ITERATIONS)
    upserts = [
        UserScramCredentialUpsertion(user, info, password.encode())
        for user, password in sorted(passwords.items())
    ]
    if not upserts:
        return []
    for future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values():
        future.result()
    return sorted(passwords)
