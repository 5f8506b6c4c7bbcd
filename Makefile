# The README's commands; CI runs `make lint test` through .ci/run.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster
export RUNTIME__DLTHUB_TELEMETRY := false
SANDBOX_PORT ?= 8765

.PHONY: install demo dev test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml setup.cfg constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

demo: install
	$(BIN)/python -m crm_assets.demo

dev: install
	@echo "sandbox on http://127.0.0.1:$(SANDBOX_PORT); Dagster UI on http://127.0.0.1:3000"
	$(BIN)/crm-sandbox --port $(SANDBOX_PORT) & sandbox=$$!; \
	trap 'kill $$sandbox' EXIT INT TERM; \
	CRM_API_BASE_URL=$${CRM_API_BASE_URL:-http://127.0.0.1:$(SANDBOX_PORT)} \
	CRM_API_KEY=$${CRM_API_KEY:-sandbox-key} \
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

# pytest exits 5 when it collected nothing; say so rather than fail on it.
test: install
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; exit 0; fi; exit $$rc

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) data .pytest_cache .ruff_cache

bench: install
	$(BIN)/python benchmarks/bench_sync.py
