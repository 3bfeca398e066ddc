# ferry: the newcomer's commands. `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv must use this machine's Python 3.11; it cannot download Python builds here.
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON := $(shell command -v python3.11 || command -v $(PYTHON))

DEMO_HOME := $(CURDIR)/.ferry/demo
DEMO_PORT ?= 4200
export FERRY_DUCKDB_PATH ?= $(DEMO_HOME)/shop.duckdb

.PHONY: help setup demo test lint unit integration e2e bench down clean

help:
	@echo "make demo   set up, start a local Prefect server, build the example project on DuckDB"
	@echo "make test   set up, lint, run every test (unit, integration, e2e)"
	@echo "make down   stop what demo started"
	@echo "make bench  per-node visibility overhead vs raw dbt (300-model synthetic project)"

# Idempotent: installs uv if missing, then the locked environment (.venv/bin/ferry, .venv/bin/dbt).
setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@$(PYTHON) -m uv sync --locked --quiet
	@test -x $(BIN)/ferry && test -x $(BIN)/dbt

demo: setup
	@mkdir -p $(DEMO_HOME)
	@$(BIN)/ferry server up --home $(DEMO_HOME)/prefect --port $(DEMO_PORT)
	@$(BIN)/python dbt_project/scripts/generate_raw_data.py --target duckdb --duckdb-path $(FERRY_DUCKDB_PATH) --scale 1
	PREFECT_API_URL=http://127.0.0.1:$(DEMO_PORT)/api $(BIN)/ferry run \
	    --project-dir dbt_project --profiles-dir dbt_project --target duckdb \
	    --artifacts $(DEMO_HOME)/artifacts
	@echo "Open http://127.0.0.1:$(DEMO_PORT) to see every dbt node of the run; 'make down' stops the server."

# The full local stack (server, process worker, deployments, automations, webhook receiver).
demo-stack: setup
	@$(BIN)/ferry stack demo --home $(DEMO_HOME) --port $(DEMO_PORT)

down:
	@if [ -x $(BIN)/ferry ]; then $(BIN)/ferry stack down --home $(DEMO_HOME); else echo "nothing to stop"; fi

lint: setup
	$(BIN)/ruff check flows tests bench
	$(BIN)/ruff format --check flows tests bench
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

e2e: setup
	$(BIN)/pytest tests/e2e

bench: setup
	$(BIN)/python bench/overhead.py --models 300 --variants raw,ferry,ferry-final,ferry-off

clean: down
	rm -rf .ferry .pytest_cache .mypy_cache .ruff_cache
