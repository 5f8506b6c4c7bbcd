# The README's commands; CI runs `make lint test` through .ci/run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster
export RUNTIME__DLTHUB_TELEMETRY := false
# As activating the virtualenv would: `dg` warns when the active one is not the project's.
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
# Python caches the project's compiled modules (__pycache__/, ignored by git) even where the shell
# turns that off: every process of a run, a dev server or the tests would compile them again
# (0.7 CPU-s per process that loads the definitions; 2.7 per pytest process collecting the tests).
unexport PYTHONDONTWRITEBYTECODE
SANDBOX_PORT ?= 8765
SANDBOX_CHURN_S ?= 120
DAGSTER_PORT ?= 3000

.PHONY: install demo dev test lint check-defs format bench soak clean schema

install: $(STAMP)

# The product with its dev extra, and the sandbox (its own distribution, not in the product wheel).
$(STAMP): pyproject.toml setup.cfg constraints.txt sandbox/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]' -e ./sandbox
	touch $@

demo: install
	$(BIN)/python -m crm_sandbox.demo

# Derive the declared schema from the configured CRM API (CRM_API_BASE_URL, CRM_API_KEY);
# SCHEMA_ARGS e.g. "--all" or "--output other.yaml".
schema: install
	$(BIN)/crm-assets schema infer $(SCHEMA_ARGS)

# The sandbox changes one record every SANDBOX_CHURN_S seconds; the change sensor ticks every 30 s;
# opportunity is in history mode unless CRM_HISTORY says otherwise (CRM_HISTORY= turns it off).
dev: install
	@echo "sandbox on http://127.0.0.1:$(SANDBOX_PORT); Dagster UI on http://127.0.0.1:$(DAGSTER_PORT)"
	$(BIN)/crm-sandbox --port $(SANDBOX_PORT) --churn-every $(SANDBOX_CHURN_S) & sandbox=$$!; \
	trap 'kill $$sandbox 2>/dev/null' EXIT INT TERM; \
	CRM_API_BASE_URL=$${CRM_API_BASE_URL:-http://127.0.0.1:$(SANDBOX_PORT)} \
	CRM_API_KEY=$${CRM_API_KEY:-sandbox-key} \
	CRM_SENSOR_INTERVAL_SECONDS=$${CRM_SENSOR_INTERVAL_SECONDS:-30} \
	CRM_HISTORY=$${CRM_HISTORY-opportunity} \
	$(BIN)/dg dev -h 127.0.0.1 -p $(DAGSTER_PORT)

# pytest exits 5 when it collected nothing; say so rather than fail on it. The tests run in
# TEST_WORKERS processes (pytest-xdist), one more than the cores: an end-to-end test waits on
# its servers and child processes, and the spare worker fills that time (measured on 2 cores:
# 2 workers left 128 CPU-s idle, 4 spent 50 more on contention than 3);
# TEST_WORKERS=0 runs in one process.
# loadgroup: the tests of one `xdist_group` (the crash tests) run in one worker, the rest one at
# a time wherever a worker is free, the longest first.
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print(len(getattr(os, "sched_getaffinity", lambda _: range(os.cpu_count() or 1))(0)) + 1)')
test: install
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# The code location loads, as Dagster's own `dg` checks it (CI runs this).
check-defs: install
	$(BIN)/dg check defs

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache

# The record gate's cost, then scenarios S1-S4 against a sandbox process (BENCH_ARGS, e.g.
# "--scenarios S2,S4 --scale 0.2"); writes benchmarks/results/latest.md and .png (matplotlib
# comes with the `bench` extra).
bench: install
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/bench_sync.py
	$(BIN)/python benchmarks/scenarios.py $(BENCH_ARGS)

# N syncs against a flaky sandbox, every fifth killed with kill -9, each compared exactly with
# the API and searched for the key (SOAK_ARGS, e.g. "--runs 10 --seed 3"); not part of `make test`.
soak: install
	$(BIN)/python -m crm_assets_tests.soak $(SOAK_ARGS)
