# The two commands a newcomer needs: `make run` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
KAFKA := deploy/local/kafka.sh

.PHONY: setup run test lint unit integration recette bench bench-micro bench-stages profile broker broker-stop broker-status broker-secure broker-secure-stop faults prometheus-tools prometheus-stop dashboards compose k8s clean

setup: $(STAMP)

# Reinstall only when the dependency pins change; pip's own cache makes a reinstall cheap.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

broker:
	@bash $(KAFKA) start

broker-stop:
	@bash $(KAFKA) stop

broker-status:
	@bash $(KAFKA) status

# A second, secure broker beside the plain one (127.0.0.1:9094, SASL/SCRAM over TLS, ACLs),
# with the namespace's topics, its principals' SCRAM users and their ACLs (docs/operations.md);
# with CCI_FUSED_ASSESSMENT=true in the environment, those of the fused topology.
SECURE_DIR := .local/kafka-secure
broker-secure: setup
	@KAFKA_SECURITY=sasl_ssl KAFKA_SECURE_DIR=$(SECURE_DIR) bash $(KAFKA) start
	@set -a && . $(SECURE_DIR)/admin.env && set +a && \
		$(BIN)/cci topics create && \
		$(BIN)/cci acls --apply --users-dir $(SECURE_DIR)/users >/dev/null

broker-secure-stop:
	@KAFKA_SECURITY=sasl_ssl KAFKA_SECURE_DIR=$(SECURE_DIR) bash $(KAFKA) stop

# Prometheus and promtool from Debian's packages, for the alert rule tests and `make run`.
prometheus-tools:
	@bash deploy/prometheus/install.sh

# `make run` leaves its Prometheus running (http://127.0.0.1:9090) so that a run can be browsed.
prometheus-stop:
	@pkill -f '[p]rometheus --config.file=$(CURDIR)/.local/prometheus' || true

run: setup broker prometheus-tools
	$(BIN)/cci demo --count 1000

# Issue 7: steps of offered load until saturation and the client and Faust ceilings, bounded
# by --budget (600 s); bench-micro times the pure functions per core, without a broker. Results:
# bench/results/. TUNING=low-latency trades throughput for latency (streams/tuning.py).
TUNING ?= default
bench: setup broker
	$(BIN)/cci bench --tuning $(TUNING)

bench-micro: setup
	$(BIN)/cci bench micro

# Each stage alone on a lodged backlog, against the Faust ceiling of the same run (--budget 300 s).
bench-stages: setup broker
	$(BIN)/cci bench stages

# One stage's worker sampled by py-spy while it drains a backlog: make profile STAGE=decision.
STAGE ?= intake
profile: setup broker
	$(BIN)/cci bench profile --stage $(STAGE)

lint: setup
	$(BIN)/ruff check streams tests
	$(BIN)/ruff format --check streams tests
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest -q tests/unit

integration: setup broker prometheus-tools
	$(BIN)/pytest -q tests/integration

# The project's recette campaign (tests/recette), each scenario in its own namespace; `make test`
# runs it too, as tests/integration/test_recette_campaign.py.
recette: setup broker
	$(BIN)/cci recette run tests/recette --parallel 2 --report-dir .local/recette-report

# Spec §11 under faults (tests/faults), on the suite's own broker (free ports, .local/faults):
# kills and pauses of workers and of the broker under load, with counts per case. `make test`
# runs it too.
faults: setup
	$(BIN)/pytest -q -s tests/faults

# The Grafana dashboards (deploy/grafana/dashboards) from streams/dashboards.py; commit the JSON.
dashboards: setup
	$(BIN)/python -m streams.dashboards

# The Kubernetes resources from streams/k8s.py, deploy/k8s for the four stages and
# deploy/k8s/fused for the fused topology; commit the YAML.
k8s: setup
	$(BIN)/python -m streams.k8s

# deploy/compose.yaml, deploy/compose-fused.yaml (the fused topology) and their Prometheus targets
# from streams/compose.py (one worker service per stage that runs, streams/topics.py); commit
# them. The image they run is the Dockerfile at the root.
compose: setup
	$(BIN)/python -m streams.compose

# Lint first: it is the cheapest way to fail. The broker is started for the integration tests.
test: lint broker prometheus-tools
	$(BIN)/pytest tests

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
