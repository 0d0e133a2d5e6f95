# Two commands for a fresh machine (Python 3.11+, Java 17+, Maven):
#   make demo   # install, start/reuse the local broker, train if needed, stream held-out BBC News
#   make api    # the HTTP API and the ask-a-question page over the demo's model
#   make test   # install, lint, type-check, unit + integration tests against a real broker
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= ../shared/datasets
BIN := $(VENV)/bin
# The benchmark's peer frameworks (bench/peers) pin older libraries: their own virtualenv.
PEERS_VENV ?= .venv-peers

export CLASSIFIER_DATA_DIR ?= $(abspath $(DATA_DIR))
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo api test lint unit integration broker-start broker-stop registry-start \
	registry-stop k8s-validate clean peers-venv

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

$(PEERS_VENV)/bin/.installed: pyproject.toml
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet -e '.[peers]'
	touch $@

# Quix Streams, MLServer, faust-streaming for `python -m bench.peers` and its smoke test
peers-venv: $(PEERS_VENV)/bin/.installed

demo: install
	$(BIN)/python deploy/demo.py --data-dir "$(CLASSIFIER_DATA_DIR)"

api: install   # serve the model trained by `make demo` over HTTP: http://127.0.0.1:8000/
	$(BIN)/python -m api --bundle artifacts/models/bbc

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

unit: install
	$(BIN)/python -m pytest tests/unit

integration: install
	$(BIN)/python -m pytest tests/integration

test: lint
	$(BIN)/python -m pytest

k8s-validate: install   # render deploy/k8s's overlays, check them against the pinned schemas
	$(BIN)/python -m deploy.k8s.validate

broker-start:
	$(PYTHON) deploy/local_kafka.py start

broker-stop:
	$(PYTHON) deploy/local_kafka.py stop

# Confluent-compatible Schema Registry (Apicurio) at http://127.0.0.1:8081/apis/ccompat/v7,
# storage in .registry/data (kept across restarts; `deploy/local_registry.py stop --wipe` drops it)
registry-start:
	$(PYTHON) deploy/local_registry.py start

registry-stop:
	$(PYTHON) deploy/local_registry.py stop

clean:
	-$(PYTHON) deploy/local_kafka.py stop
	-$(PYTHON) deploy/local_registry.py stop
	rm -rf $(VENV) $(PEERS_VENV) .kafka .registry artifacts .mypy_cache .ruff_cache .pytest_cache
