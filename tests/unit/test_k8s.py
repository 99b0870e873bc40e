"""The Kubernetes resources of deploy/k8s: committed files up to date with streams/k8s.py, valid
against the schemas of Kubernetes and of the operators whose resources they are (offline:
kubernetes-validate bundles the former, tests/fixtures/k8s-schemas vendors the latter), and
faithful to the catalogue they are generated from, in both topologies: the four stages at the top
of deploy/k8s, the fused one under deploy/k8s/fused."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from streams import access, k8s
from streams.config import Settings
from streams.reference import load_reference
from streams.topics import (
    ASSESSMENTS,
    STAGES,
    all_topics,
    group_id,
    topic_config,
    topic_name,
    topology,
)

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
SCHEMAS = Path(__file__).resolve().parents[1] / "fixtures" / "k8s-schemas"
# The oldest and the newest Kubernetes that kubernetes-validate bundles and the resources are
# meant for: policy/v1 budgets and the probes' fields are older than both.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
CORE_KINDS = {"ConfigMap", "Deployment", "PodDisruptionBudget", "Service"}
# Strimzi serves v1beta2 and v1 side by side (0.49 and later); the resources are checked against
# both, so that moving to v1 is a change of `STRIMZI_API` alone.
ALSO_VALID_AS = {"kafka.strimzi.io/v1beta2": "kafka.strimzi.io/v1"}
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def committed() -> dict[str, list[dict[str, Any]]]:
    return {
        path.relative_to(K8S).as_posix(): [
            d for d in yaml.safe_load_all(path.read_text("utf-8")) if d is not None
        ]
        for path in sorted(K8S.rglob("*.yaml"))
    }


TOPOLOGIES = pytest.mark.parametrize("fused", [False, True], ids=["four-stage", "fused"])


@cache
def rendered(namespace: str, fused: bool = False) -> dict[str, str]:
    """The files of one topology, relative to its own directory."""
    return k8s.render_topology(namespace, fused)


def resources(namespace: str = "cci", fused: bool = False) -> Iterator[dict[str, Any]]:
    # Parsed anew each time: a test may change what it gets.
    for name, text in rendered(namespace, fused).items():
        if not name.endswith("kustomization.yaml"):
            yield from yaml.safe_load_all(text)


def by_kind(kind: str, namespace: str = "cci", fused: bool = False) -> dict[str, dict[str, Any]]:
    return {r["metadata"]["name"]: r for r in resources(namespace, fused) if r["kind"] == kind}


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused where the API server would drop them: a
    misspelt field fails here rather than vanishing silently on the cluster."""
    if isinstance(schema, list):
        return [strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: strict(v) for k, v in schema.items()}
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not out.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    group, version = api_version.split("/")
    schema = json.loads((SCHEMAS / f"{group}_{version}_{kind}.json").read_text("utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(strict(schema))


# --- the committed files ------------------------------------------------------------------


def test_committed_files_are_what_the_code_renders() -> None:
    assert k8s.stale(K8S) == [], "deploy/k8s is stale: run `make k8s`"


def test_every_committed_yaml_parses_as_named_resources() -> None:
    files = committed()
    assert "kustomization.yaml" in files
    for name, documents in files.items():
        assert documents, f"{name} holds no resource"
        for doc in documents:
            assert doc["apiVersion"] and doc["kind"], name
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"], name


def test_kustomizations_list_every_resource_file() -> None:
    files = committed()
    [base] = files["kustomization.yaml"]
    top = {n for n in files if "/" not in n and n != "kustomization.yaml"}
    assert set(base["resources"]) == top and len(base["resources"]) == len(top)
    [recette] = files["recette/kustomization.yaml"]
    assert recette["resources"] == ["..", "cop-simulator.yaml"]


def test_render_is_stable() -> None:
    assert k8s.render() == k8s.render()


def test_check_names_the_stale_file_and_passes_once_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert k8s.main(["--check", "--out", str(tmp_path)]) == 1
    assert k8s.main(["--out", str(tmp_path)]) == 0
    assert k8s.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "topics.yaml").write_text("# edited by hand\n", "utf-8")
    (tmp_path / "left-over.yaml").write_text("kind: ConfigMap\n", "utf-8")
    assert k8s.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "topics.yaml" in err and "left-over.yaml" in err and "make k8s" in err
    assert k8s.main(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "left-over.yaml").exists()


# --- schemas ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_resources_validate_against_kubernetes(version: str) -> None:
    checked = 0
    for doc in (d for docs in committed().values() for d in docs):
        if doc["kind"] in CORE_KINDS:
            kubernetes_validate.validate(doc, version, strict=True)
            checked += 1
    assert checked >= len(STAGES) * 2 + 2


def test_custom_resources_validate_against_their_crds() -> None:
    kinds: set[str] = set()
    for doc in (d for docs in committed().values() for d in docs):
        if doc["kind"] in CORE_KINDS | {"Kustomization"}:
            continue
        for api_version in (doc["apiVersion"], ALSO_VALID_AS.get(doc["apiVersion"])):
            if api_version is not None:
                crd_validator(api_version, doc["kind"]).validate({**doc, "apiVersion": api_version})
        kinds.add(doc["kind"])
    assert kinds == {
        "Kafka",
        "KafkaNodePool",
        "KafkaTopic",
        "KafkaUser",
        "ScaledObject",
        "TriggerAuthentication",
        "PodMonitor",
    }


def test_the_crd_check_refuses_a_misspelt_field() -> None:
    [scaled, *_] = by_kind("ScaledObject").values()
    scaled["spec"]["maxReplicasCount"] = scaled["spec"].pop("maxReplicaCount")
    with pytest.raises(jsonschema.ValidationError, match="maxReplicasCount"):
        crd_validator(scaled["apiVersion"], "ScaledObject").validate(scaled)


def test_the_core_check_refuses_a_misspelt_field() -> None:
    [deployment, *_] = by_kind("Deployment").values()
    deployment["spec"]["template"]["spec"]["containers"][0]["readynessProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[-1], strict=True)


@TOPOLOGIES
def test_names_are_kubernetes_names(fused: bool) -> None:
    seen: set[tuple[str, str]] = set()
    for doc in resources(fused=fused):
        name = doc["metadata"]["name"]
        assert len(name) <= 253 and DNS_SUBDOMAIN.fullmatch(name), name
        assert (doc["kind"], name) not in seen, f"two {doc['kind']} named {name}"
        seen.add((doc["kind"], name))
        assert doc["metadata"]["namespace"] == "cci"


# --- faithful to the catalogue ------------------------------------------------------------


@pytest.mark.parametrize("namespace", ["cci", "recette-7"])
def test_every_topic_has_its_kafka_topic(namespace: str) -> None:
    topics = {t["spec"]["topicName"]: t for t in by_kind("KafkaTopic", namespace).values()}
    assert set(topics) == set(all_topics(namespace))
    for name, compacted in all_topics(namespace).items():
        spec = topics[name]["spec"]
        assert spec["partitions"] == Settings().partitions
        assert spec["replicas"] == k8s.REPLICAS
        assert spec["config"] == topic_config(compacted)
        assert topics[name]["metadata"]["labels"] == {"strimzi.io/cluster": k8s.CLUSTER}


def test_non_compacted_topics_keep_a_week() -> None:
    assert topic_config(False) == {"retention.ms": str(7 * 24 * 3600 * 1000)}


@TOPOLOGIES
@pytest.mark.parametrize("namespace", ["cci", "recette-7"])
def test_each_kafka_user_has_exactly_the_acls_of_its_principal(namespace: str, fused: bool) -> None:
    users = by_kind("KafkaUser", namespace, fused)
    principals = access.principals(namespace, fused)
    assert set(users) == {p.user for p in principals}
    types = {v: k for k, v in k8s._RESOURCE_TYPES.items()}
    patterns = {v: k for k, v in k8s._PATTERN_TYPES.items()}
    for principal in principals:
        spec = users[principal.user]["spec"]
        assert spec["authentication"] == {"type": "scram-sha-512"}
        got = {
            (
                types[acl["resource"]["type"]],
                patterns[acl["resource"]["patternType"]],
                acl["resource"]["name"],
                op.upper(),
            )
            for acl in spec["authorization"]["acls"]
            for op in acl["operations"]
            if acl["type"] == "allow"
        }
        want = {
            (a.resource_type, a.pattern_type, a.resource_name, a.operation) for a in principal.acls
        }
        assert got == want, principal.user


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    [only] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


@TOPOLOGIES
def test_every_stage_runs_as_its_own_principal_with_probes_on_its_port(fused: bool) -> None:
    deployments = by_kind("Deployment", fused=fused)
    port = Settings().web_port
    for stage in topology(fused):
        deployment = deployments[group_id("cci", stage)]
        c = container(deployment)
        assert c["command"] == ["cci", "worker", "--stage", stage]
        assert c["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
        for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
            assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}
        env = {e["name"]: e for e in c["env"]}
        assert env["CCI_SASL_USERNAME"]["value"] == access.stage_user("cci", stage)
        secrets = {
            v["secret"]["secretName"]
            for v in deployment["spec"]["template"]["spec"]["volumes"]
            if "secret" in v
        }
        assert secrets == {access.stage_user("cci", stage), f"{k8s.CLUSTER}-cluster-ca-cert"}
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["resources"]["requests"] and c["resources"]["limits"]
        # The new worker joins before the old one leaves: never a stage without a worker.
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    budgets = by_kind("PodDisruptionBudget", fused=fused)
    assert set(budgets) == {group_id("cci", s) for s in topology(fused)}


def test_the_probed_pages_exist_on_a_worker() -> None:
    # The pages themselves are tested in test_probes.py; here, that the paths agree.
    source = (Path(k8s.__file__).parent / "app.py").read_text("utf-8")
    for path in ("/health", "/ready", "/metrics"):
        assert f'@app.page("{path}")' in source


@TOPOLOGIES
def test_each_stage_scales_on_the_lag_of_its_group_up_to_one_worker_per_partition(
    fused: bool,
) -> None:
    scaled = by_kind("ScaledObject", fused=fused)
    auths = by_kind("TriggerAuthentication", fused=fused)
    assert set(scaled) == {group_id("cci", s) for s in topology(fused)}
    assert set(auths) == set(scaled)
    for stage, spec in topology(fused).items():
        obj = scaled[group_id("cci", stage)]
        assert obj["spec"]["maxReplicaCount"] == Settings().partitions
        assert obj["spec"]["scaleTargetRef"] == {"name": group_id("cci", stage)}
        triggers = obj["spec"]["triggers"]
        assert {t["metadata"]["topic"] for t in triggers} == {
            topic_name("cci", r) for r in spec.reads
        }
        for trigger in triggers:
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["consumerGroup"] == group_id("cci", stage)
            assert trigger["authenticationRef"]["name"] in auths
        assert "autoscaling.keda.sh/paused-replicas" not in obj["metadata"].get("annotations", {})


@TOPOLOGIES
def test_the_settings_config_map_is_what_a_worker_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fused: bool
) -> None:
    monkeypatch.delenv("CCI_FUSED_ASSESSMENT", raising=False)
    [settings_map] = [
        r
        for r in by_kind("ConfigMap", fused=fused).values()
        if r["metadata"]["name"] == "cci-settings"
    ]
    password = tmp_path / "password"
    password.write_text("not-a-real-one\n", "utf-8")
    for name, value in settings_map["data"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CCI_SASL_PASSWORD_FILE", str(password))
    monkeypatch.setenv("CCI_SASL_USERNAME", "cci-intake")
    settings = Settings()
    assert settings.fused_assessment is fused
    assert settings.security_protocol == "SASL_SSL"
    assert settings.bootstrap == f"{k8s.CLUSTER}-kafka-bootstrap.cci.svc:9093"
    assert settings.replication == k8s.REPLICAS
    assert settings.reference_dir == Path(k8s.REFERENCE_MOUNT)
    assert settings.ssl_cafile == Path(k8s.CA_MOUNT) / "ca.crt"
    assert settings_map["data"]["CCI_SASL_PASSWORD_FILE"] == f"{k8s.USER_SECRET_MOUNT}/password"
    defaults = Settings.model_fields
    for name in ("country", "partitions", "web_port", "cop_response_timeout", "lapse_after"):
        assert getattr(settings, name) == defaults[name].default, name


def test_the_reference_config_map_loads_as_the_workers_reference_data(tmp_path: Path) -> None:
    [reference] = [
        r for r in by_kind("ConfigMap").values() if r["metadata"]["name"] == "cci-reference"
    ]
    for name, text in reference["data"].items():
        (tmp_path / name).write_text(text, "utf-8")
    assert load_reference(tmp_path).checksums == load_reference().checksums


@TOPOLOGIES
def test_credentials_are_only_referenced(fused: bool) -> None:
    # Strimzi writes the passwords into the users' Secrets; the pods read them as files.
    for doc in resources(fused=fused):
        assert doc["kind"] != "Secret"
        if doc["kind"] == "ConfigMap":
            assert "CCI_SASL_PASSWORD" not in doc["data"]
        if doc["kind"] == "Deployment":
            assert "CCI_SASL_PASSWORD" not in {e["name"] for e in container(doc)["env"]}


@TOPOLOGIES
def test_the_tools_run_as_the_tools_principal_and_the_simulator_only_in_recette(
    fused: bool,
) -> None:
    files = rendered("cci", fused)
    [clock] = yaml.safe_load_all(files["clock.yaml"])
    [simulator] = yaml.safe_load_all(files["recette/cop-simulator.yaml"])
    assert container(clock)["command"] == ["cci", "clock"]
    assert container(simulator)["command"] == ["cci", "simulate-cop"]
    for deployment in (clock, simulator):
        env = {e["name"]: e.get("value") for e in container(deployment)["env"]}
        assert env["CCI_SASL_USERNAME"] == access.tools_user("cci")
        # Never two at once, even during a rollout: two clocks would tick twice.
        assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert "cop-simulator" not in "".join(f for f in files if not f.startswith("recette/"))


def test_the_tools_commands_exist() -> None:
    from streams.cli import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    assert {"worker", "clock", "simulate-cop"} <= names


@TOPOLOGIES
def test_the_pod_monitor_scrapes_the_stage_workers_as_job_cci(fused: bool) -> None:
    [monitor] = by_kind("PodMonitor", fused=fused).values()
    selector = monitor["spec"]["selector"]["matchLabels"]
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    scraped = [
        d
        for d in by_kind("Deployment", fused=fused).values()
        if selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    ]
    assert {container(d)["command"][-1] for d in scraped} == set(topology(fused))
    for deployment in scraped:
        assert endpoint["port"] in {p["name"] for p in container(deployment)["ports"]}
    assert endpoint["path"] == "/metrics"
    assert {"targetLabel": "job", "replacement": "cci"} in endpoint["relabelings"]


def test_dns_name_spells_any_topic_as_a_kubernetes_name() -> None:
    assert k8s.dns_name("cci.declarations.lodged") == "cci.declarations.lodged"
    assert k8s.dns_name("Odd_Name..-x-.") == "odd-name.x"
    with pytest.raises(ValueError):
        k8s.dns_name("._.")


@pytest.mark.parametrize("namespace", ["", "CCI", "cci_x", "-cci", "x" * 64])
def test_a_namespace_kubernetes_cannot_name_is_refused(namespace: str) -> None:
    with pytest.raises(ValueError, match="namespace"):
        k8s.render(namespace)


# --- the fused topology -------------------------------------------------------------------


def test_the_fused_topology_is_its_own_directory_of_the_committed_files() -> None:
    """Under deploy/k8s/fused, so that the staleness and schema tests above, which read every
    committed file, check it as they check the four stages."""
    whole = k8s.render()
    assert {n: t for n, t in whole.items() if not n.startswith("fused/")} == rendered("cci")
    assert {n.removeprefix("fused/"): t for n, t in whole.items() if n.startswith("fused/")} == (
        rendered("cci", True)
    )
    files = committed()
    assert {f"fused/{n}" for n in rendered("cci", True)} <= set(files)
    [fused] = files["fused/kustomization.yaml"]
    top = {n.removeprefix("fused/") for n in files if n.count("/") == 1 and n.startswith("fused/")}
    top.discard("kustomization.yaml")
    assert set(fused["resources"]) == top and len(fused["resources"]) == len(top)
    [recette] = files["fused/recette/kustomization.yaml"]
    assert recette["resources"] == ["..", "cop-simulator.yaml"]
    # The four stages' kustomization does not take in the fused files.
    [base] = files["kustomization.yaml"]
    assert not [r for r in base["resources"] if r.startswith("fused")]


def test_the_fused_topology_runs_no_risk_or_duty_stage() -> None:
    assert not {"stage-risk.yaml", "stage-duties.yaml"} & set(rendered("cci", True))
    gone = {group_id("cci", "risk"), group_id("cci", "duties")}
    for kind in ("Deployment", "PodDisruptionBudget", "ScaledObject", "TriggerAuthentication"):
        assert not gone & set(by_kind(kind, fused=True)), kind
        assert gone <= set(by_kind(kind)), kind
    commands = {
        tuple(container(d)["command"])
        for name, text in rendered("cci", True).items()
        if not name.startswith("recette/")
        for d in yaml.safe_load_all(text)
        if d["kind"] == "Deployment"
    }
    assert commands == {
        ("cci", "worker", "--stage", "intake"),
        ("cci", "worker", "--stage", "decision"),
        ("cci", "clock"),
    }


def test_the_fused_settings_choose_the_fused_topology_and_roll_the_pods() -> None:
    def settings_map(fused: bool) -> dict[str, str]:
        data: dict[str, str] = by_kind("ConfigMap", fused=fused)["cci-settings"]["data"]
        return data

    assert settings_map(True)["CCI_FUSED_ASSESSMENT"] == "true"
    assert "CCI_FUSED_ASSESSMENT" not in settings_map(False)
    assert {k: v for k, v in settings_map(True).items() if k != "CCI_FUSED_ASSESSMENT"} == (
        settings_map(False)
    )

    def checksums(fused: bool) -> set[str]:
        return {
            d["spec"]["template"]["metadata"]["annotations"]["cci/config-checksum"]
            for d in by_kind("Deployment", fused=fused).values()
        }

    # A pod of one topology must not look configured like a pod of the other.
    assert len(checksums(True)) == len(checksums(False)) == 1
    assert checksums(True) != checksums(False)


def test_the_fused_users_let_the_decision_write_the_assessments_and_not_read_them() -> None:
    users = by_kind("KafkaUser", fused=True)
    assert set(users) == {"cci-decision", "cci-intake", "cci-tools"}
    rights = {
        acl["resource"]["name"]: acl["operations"]
        for acl in users["cci-decision"]["spec"]["authorization"]["acls"]
    }
    for logical in ASSESSMENTS:
        assert rights[topic_name("cci", logical)] == ["Write", "Describe"], logical
    # The intake and the tools are the same users as in the four stages.
    for user in ("cci-intake", "cci-tools"):
        assert users[user] == by_kind("KafkaUser")[user]


def test_the_fused_decision_scales_on_the_inputs_it_still_reads() -> None:
    scaled = by_kind("ScaledObject", fused=True)[group_id("cci", "decision")]
    topics = {t["metadata"]["topic"] for t in scaled["spec"]["triggers"]}
    assert topics == {topic_name("cci", r) for r in topology(True)["decision"].reads}
    assert not topics & {topic_name("cci", a) for a in ASSESSMENTS}


def test_check_names_a_stale_fused_file_and_one_the_fused_topology_does_not_make(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert k8s.main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "fused" / "users.yaml").is_file()
    assert not (tmp_path / "fused" / "stage-risk.yaml").exists()
    (tmp_path / "fused" / "users.yaml").write_text(rendered("cci")["users.yaml"], "utf-8")
    (tmp_path / "fused" / "stage-risk.yaml").write_text(rendered("cci")["stage-risk.yaml"])
    assert k8s.main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "fused/users.yaml" in err and "fused/stage-risk.yaml" in err and "make k8s" in err
    assert k8s.main(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "fused" / "stage-risk.yaml").exists()
    assert k8s.main(["--check", "--out", str(tmp_path)]) == 0
