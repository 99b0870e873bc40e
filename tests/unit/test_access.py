"""The principals and ACLs derived from the topic catalogue: each stage gets exactly what it
reads and writes, and Faust's own names fall under the prefixes granted for them."""

from __future__ import annotations

import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from faust.transport.consumer import TransactionManager

from streams.access import (
    Acl,
    acl_bindings,
    all_acls,
    inbound_events,
    leader_topic,
    principals,
    rules,
    running_stage,
    stage_acls,
    stage_user,
    tools_acls,
    tools_user,
    user_passwords,
)
from streams.app import make_app
from streams.config import Settings
from streams.topics import (
    ASSESSMENTS,
    EVENTS,
    STAGES,
    all_topics,
    changelog_topic,
    dead_letter_topic,
    group_id,
    stage_changelogs,
    topic_name,
    topology,
)

NS = "ns1"


def literal_topics(acls: tuple[Acl, ...], operation: str) -> set[str]:
    return {
        a.resource_name
        for a in acls
        if a.resource_type == "TOPIC" and a.pattern_type == "LITERAL" and a.operation == operation
    }


def internal(stage: str) -> set[str]:
    """Faust's own topics of the stage: its tables' changelogs and its leader topic."""
    return {*stage_changelogs(NS, stage), leader_topic(NS, stage)}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_reads_exactly_the_topics_it_reads(stage: str) -> None:
    acls = stage_acls(NS, stage)
    expected = {topic_name(NS, logical) for logical in STAGES[stage].reads}
    assert literal_topics(acls, "READ") == expected | internal(stage)


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_writes_exactly_its_outputs_and_its_dead_letters(stage: str) -> None:
    acls = stage_acls(NS, stage)
    expected = {topic_name(NS, logical) for logical in STAGES[stage].writes}
    expected.add(dead_letter_topic(NS, stage))
    assert literal_topics(acls, "WRITE") == expected | internal(stage)
    # DESCRIBE goes with every topic it uses, and with no other.
    reads = {topic_name(NS, logical) for logical in STAGES[stage].reads}
    assert literal_topics(acls, "DESCRIBE") == expected | reads | internal(stage)
    assert literal_topics(acls, "CREATE") == internal(stage)


def test_the_internal_topics_are_the_tables_changelogs_and_the_leader_topic() -> None:
    assert internal("intake") == {
        "ns1-intake-declarations-changelog",
        "ns1-intake-sequences-changelog",
        "ns1-intake-__assignor-__leader",
    }
    assert internal("risk") == {"ns1-risk-__assignor-__leader"}


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_stage_has_its_group_and_its_own_prefixes_and_nothing_else(stage: str) -> None:
    acls = stage_acls(NS, stage)
    group = group_id(NS, stage)
    assert stage_user(NS, stage) == group
    assert {a.principal for a in acls} == {f"User:{group}"}
    others = {
        (a.resource_type, a.pattern_type, a.resource_name, a.operation)
        for a in acls
        if not (a.resource_type == "TOPIC" and a.pattern_type == "LITERAL")
    }
    assert others == {
        ("GROUP", "LITERAL", group, "READ"),
        ("TRANSACTIONAL_ID", "PREFIXED", f"{group}-", "WRITE"),
        ("TRANSACTIONAL_ID", "PREFIXED", f"{group}-", "DESCRIBE"),
    }


def test_no_stage_can_write_what_it_does_not_produce() -> None:
    for stage, spec in STAGES.items():
        writable = literal_topics(stage_acls(NS, stage), "WRITE")
        foreign = {topic_name(NS, logical) for logical in EVENTS if logical not in spec.writes}
        for other in STAGES:
            if other != stage:
                foreign |= {dead_letter_topic(NS, other), *internal(other)}
        assert not writable & foreign, stage
        assert writable <= set(all_topics(NS)) | {leader_topic(NS, stage)}
        # Its only prefix, its transactional ids, covers no other stage's.
        for acl in stage_acls(NS, stage):
            if acl.pattern_type == "PREFIXED":
                assert acl.resource_type == "TRANSACTIONAL_ID"
                assert not any(
                    group_id(NS, other).startswith(acl.resource_name)
                    for other in STAGES
                    if other != stage
                )


def test_the_intake_cannot_write_the_decisions_or_the_assessments() -> None:
    writable = literal_topics(stage_acls(NS, "intake"), "WRITE")
    for logical in ("declaration.released", "risk.assessed", "declaration.lodged"):
        assert topic_name(NS, logical) not in writable


def test_inbound_events_are_the_ones_no_stage_writes() -> None:
    assert set(inbound_events()) == {
        "declaration.lodged",
        "invalidation.requested",
        "cop.goods-presented",
        "cop.risk-result",
        "control.result",
        "clock.tick",
    }


def test_the_tools_write_the_inbound_events_and_read_everything() -> None:
    acls = tools_acls(NS)
    assert {a.principal for a in acls} == {f"User:{tools_user(NS)}"}
    assert literal_topics(acls, "WRITE") == {topic_name(NS, lg) for lg in inbound_events()}
    events = {topic_name(NS, logical) for logical in EVENTS}
    dead_letters = {dead_letter_topic(NS, stage) for stage in STAGES}
    assert literal_topics(acls, "READ") == events | dead_letters
    assert literal_topics(acls, "DESCRIBE") == events | dead_letters
    # Not the stages' state: their tables' changelogs.
    assert not literal_topics(acls, "READ") & {t for s in STAGES for t in internal(s)}
    groups = {
        (a.pattern_type, a.resource_name, a.operation) for a in acls if a.resource_type == "GROUP"
    }
    assert groups == {("LITERAL", f"{NS}-cop-simulator", "READ"), ("PREFIXED", "cci-tool-", "READ")}
    assert not [a for a in acls if a.resource_type == "TRANSACTIONAL_ID" or a.operation == "CREATE"]
    assert {a.pattern_type for a in acls if a.resource_type == "TOPIC"} == {"LITERAL"}


def test_every_principal_is_distinct_and_the_list_is_stable() -> None:
    found = principals(NS)
    assert [p.role for p in found] == [*sorted(STAGES), "tools"]
    assert len({p.user for p in found}) == len(found)
    assert tools_user(NS) not in {stage_user(NS, s) for s in STAGES}
    assert principals(NS) == found
    assert all_acls(NS) == [a for p in found for a in p.acls]
    assert all(list(p.acls) == sorted(p.acls) for p in found)


def test_principals_of_two_namespaces_share_nothing() -> None:
    first = {(a.principal, a.resource_name) for a in all_acls("a1")}
    second = {(a.principal, a.resource_name) for a in all_acls("b2")}
    assert not {p for p, _ in first} & {p for p, _ in second}
    assert not {r for _, r in first if r != "cci-tool-"} & {r for _, r in second}


def test_unknown_stage_is_refused() -> None:
    with pytest.raises(KeyError, match="unknown stage"):
        stage_user(NS, "nope")


def test_rules_put_the_operations_of_one_resource_together() -> None:
    grouped = rules(stage_acls(NS, "risk"))
    assert [(r.resource_type, r.resource_name, r.operations) for r in grouped] == [
        ("GROUP", "ns1-risk", ("READ",)),
        ("TOPIC", "ns1-risk-__assignor-__leader", ("CREATE", "READ", "WRITE", "DESCRIBE")),
        ("TOPIC", "ns1.dead-letters.risk", ("WRITE", "DESCRIBE")),
        ("TOPIC", "ns1.declarations.accepted", ("READ", "DESCRIBE")),
        ("TOPIC", "ns1.risk.assessed", ("WRITE", "DESCRIBE")),
        ("TRANSACTIONAL_ID", "ns1-risk-", ("WRITE", "DESCRIBE")),
    ]


def test_acls_become_confluent_kafka_bindings() -> None:
    acl = Acl("User:ns1-risk", "TRANSACTIONAL_ID", "PREFIXED", "ns1-risk-", "WRITE")
    (binding,) = acl_bindings([acl])
    assert (binding.restype.name, binding.resource_pattern_type.name) == (
        "TRANSACTIONAL_ID",
        "PREFIXED",
    )
    assert (binding.name, binding.principal, binding.host) == ("ns1-risk-", "User:ns1-risk", "*")
    assert (binding.operation.name, binding.permission_type.name) == ("WRITE", "ALLOW")


def test_faust_names_its_topics_and_transactions_as_the_acls_say() -> None:
    """The grants are right only as long as Faust names things this way."""
    group = group_id(NS, "intake")
    app = make_app("intake", Settings(namespace=NS, store="memory://"))
    assert app.conf.id == group
    changelog = app.Table("declarations", partitions=2).changelog_topic.get_topic_name()
    assert changelog == changelog_topic(NS, "intake", "declarations")
    assert cast(Any, app._leader_assignor)._leader_topic_name == leader_topic(NS, "intake")
    tid = TransactionManager.transactional_id_format.format(
        group_id=app.conf.id, tpg=SimpleNamespace(group=0, partition=3)
    )
    assert tid.startswith(f"{group}-")


def test_user_passwords_are_made_once_and_readable_by_their_owner_only(tmp_path: Path) -> None:
    first = user_passwords(tmp_path / "users", ["ns1-intake", "ns1-tools"])
    assert sorted(first) == ["ns1-intake", "ns1-tools"]
    assert all(len(p) >= 24 for p in first.values())
    assert first["ns1-intake"] != first["ns1-tools"]
    path = tmp_path / "users" / "ns1-intake.password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert user_passwords(tmp_path / "users", ["ns1-intake", "ns1-tools"]) == first


# --- the fused topology ---------------------------------------------------------------------

FUSED = topology(True)


def test_the_fused_topology_has_principals_for_the_stages_it_runs_only() -> None:
    found = principals(NS, fused_assessment=True)
    assert [p.role for p in found] == ["decision", "intake", "tools"]
    users = {p.user for p in found}
    assert stage_user(NS, "risk") not in users and stage_user(NS, "duties") not in users
    principals_named = {a.principal for a in all_acls(NS, fused_assessment=True)}
    assert principals_named == {f"User:{u}" for u in users}
    for stage in ("risk", "duties"):
        with pytest.raises(KeyError, match="does not run in the fused topology"):
            stage_acls(NS, stage, fused_assessment=True)


def test_the_fused_decision_writes_the_assessments_and_no_longer_reads_them() -> None:
    acls = stage_acls(NS, "decision", fused_assessment=True)
    assessments = {topic_name(NS, logical) for logical in ASSESSMENTS}
    assert assessments <= literal_topics(acls, "WRITE")
    assert not assessments & literal_topics(acls, "READ")
    # The four stages' decision is the other way round.
    split = stage_acls(NS, "decision")
    assert assessments <= literal_topics(split, "READ")
    assert not assessments & literal_topics(split, "WRITE")


@pytest.mark.parametrize("stage", sorted(FUSED))
def test_a_fused_stage_reads_and_writes_exactly_what_it_does_there(stage: str) -> None:
    acls = stage_acls(NS, stage, fused_assessment=True)
    spec = running_stage(stage, fused_assessment=True)
    reads = {topic_name(NS, logical) for logical in spec.reads}
    writes = {topic_name(NS, logical) for logical in spec.writes} | {dead_letter_topic(NS, stage)}
    assert literal_topics(acls, "READ") == reads | internal(stage)
    assert literal_topics(acls, "WRITE") == writes | internal(stage)
    assert literal_topics(acls, "DESCRIBE") == reads | writes | internal(stage)
    assert literal_topics(acls, "CREATE") == internal(stage)


def test_the_intake_and_the_tools_have_the_same_rights_in_either_topology() -> None:
    assert stage_acls(NS, "intake", fused_assessment=True) == stage_acls(NS, "intake")
    assert inbound_events(fused_assessment=True) == inbound_events()
    # The tools still read the risk and duty stages' dead letters: the topics remain.
    assert tools_acls(NS, fused_assessment=True) == tools_acls(NS)


def test_the_four_stage_acls_are_the_default() -> None:
    assert principals(NS, fused_assessment=False) == principals(NS)
    assert all_acls(NS, fused_assessment=False) == all_acls(NS)


def test_an_unknown_stage_is_refused_as_unknown_in_either_topology() -> None:
    for fused in (False, True):
        with pytest.raises(KeyError, match="unknown stage"):
            stage_acls(NS, "nope", fused_assessment=fused)
