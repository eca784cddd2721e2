# Berth: `make run` starts everything on embedded defaults; `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000
SERVE_PORT ?= 8081
PYTEST_ARGS ?=

export SECRET_KEY_FILE ?= $(CURDIR)/var/secret_key

.PHONY: run run-lock lint test fuzz bench bench-large load migrate demo clean proto plotly

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Everything a single-machine install runs: web, worker (torch, onnxruntime) and the demo.
$(VENV)/.installed-worker: pyproject.toml | $(PY)
	$(PIP) install -e ".[worker,serve]"
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e ".[worker,serve,dev]"
	touch $@

var/secret_key:
	mkdir -p var
	umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

migrate: $(VENV)/.installed-worker var/secret_key
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py demo

# A second make run while one runs stops here, before it migrates or touches var/.
run-lock:
	@$(PYTHON) dashboard/runlocal.py $${BERTH_VAR_DIR:-var}

run: run-lock demo
	$(PY) manage.py collectstatic --noinput -v0
	$(PY) manage.py serve --host $(HOST) --port $(PORT) --serving-port $(SERVE_PORT)

# ruff's rules and format and the import-linter contracts in pyproject.toml (the layers of docs/architecture.md).
lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

test: lint $(VENV)/.installed-dev var/secret_key
	rm -rf var/test
	BERTH_VAR_DIR=$(CURDIR)/var/test $(VENV)/bin/pytest $(PYTEST_ARGS)

# tests/fuzz deeper than make test runs it: more examples per API operation and more mutants
# per model format and serving property, from a seed that changes daily (make fuzz FUZZ_SEED=20261122 repeats a run).
FUZZ_EXAMPLES ?= 200
FUZZ_MUTANTS ?= 100
FUZZ_SEED ?= $(shell date +%Y%m%d)
fuzz: $(VENV)/.installed-dev var/secret_key
	rm -rf var/fuzz
	@echo "fuzzing with FUZZ_SEED=$(FUZZ_SEED)"
	BERTH_VAR_DIR=$(CURDIR)/var/fuzz BERTH_FUZZ_SEED=$(FUZZ_SEED) BERTH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
		BERTH_FUZZ_MUTANTS=$(FUZZ_MUTANTS) $(VENV)/bin/pytest tests/fuzz $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev var/secret_key
	$(PY) bench/upload.py
	$(PY) bench/harness_overhead.py
	$(PY) bench/compression.py
	$(PY) bench/distill.py
	$(PY) bench/compare_page.py
	$(PY) bench/serving.py
	$(PY) bench/serving_dataplane.py
	$(PY) bench/sketch.py
	$(PY) bench/drift.py
	$(PY) bench/ingest.py
	$(PY) bench/monitoring_page.py
	$(PY) bench/load.py

# The registry and telemetry APIs under 20 concurrent clients; exits 1 on any error or lost telemetry.
load: $(VENV)/.installed-dev var/secret_key
	$(PY) bench/load.py --seconds 10

bench-large: $(VENV)/.installed-dev var/secret_key
	$(PIP) install -e ".[large]"
	$(PY) bench/compression.py --large

# berth-serve's gRPC messages (committed; run after editing serving/proto/grpc_predict_v2.proto).
proto: $(VENV)/.installed-dev
	$(PY) -m grpc_tools.protoc -I serving/proto --python_out=serving/proto --pyi_out=serving/proto \
		serving/proto/grpc_predict_v2.proto

# static/vendor/plotly-berth.min.js: plotly.js with the trace types the pages draw (committed; run
# after changing static_src/plotly/: a new trace type in a chart, or plotly.js's pin).
plotly:
	cd static_src/plotly && npm ci --no-audit --no-fund && npm run build

clean:
	rm -rf var/test var/broker
