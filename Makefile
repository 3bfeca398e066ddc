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

.PHONY: help setup demo test lint unit integration e2e bench down clean

help:
	@echo "make demo   set up, start the local stack (Prefect server, worker, deployments, alerts),"
	@echo "            build the example project on DuckDB, show the alert of a failing run"
	@echo "make test   set up, lint, run every test (unit, integration, e2e)"
	@echo "make down   stop what demo started"
	@echo "make bench  per-node visibility overhead vs raw dbt (300-model synthetic project)"

# Idempotent: installs uv if missing, then the locked environment (.venv/bin/ferry, .venv/bin/dbt).
setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@$(PYTHON) -m uv sync --locked --quiet
	@test -x $(BIN)/ferry && test -x $(BIN)/dbt

# The real thing on 127.0.0.1: a Prefect server (:4200), the ferry-local process pool and its
# worker, the local deployments, the automations with a webhook receiver (:4201) as channel;
# then run-local twice (passing, then made to fail) and the alert the failure produced.
demo: setup
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
