# ta_lab2 refresh: every target runs the same library code as the DAG (see README.md).
# The warehouse: $TA_LAB2_DB_URL if set, else an embedded Postgres under .local/ (pgserver).
SHELL := /bin/bash
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)
TA := $(BIN)/python -m ta_lab2
IDS ?= all
ARGS ?=

.PHONY: help venv demo test test-fast bars emas daily-refresh dry-run validate clean-logs up down bench lint lock

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/python: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	@touch $@

venv: $(BIN)/python  ## create .venv from the pinned requirements.txt

demo: venv  ## load the repo's real CMC files, run the whole DAG once, print the summary
	$(TA) demo

test: venv  ## the whole suite: unit, integration (real Postgres), DAG (dag.test) and e2e (airflow standalone)
	$(BIN)/python -m pytest -q --durations=10

test-fast: venv  ## unit + integration only (no Airflow scheduler)
	$(BIN)/python -m pytest -q -m "not e2e and not slow"

bars: venv  ## refresh the six bar families (IDS=1,52 ARGS="--builders 1d,multi_tf")
	$(TA) refresh --targets bars --ids $(IDS) $(ARGS)

emas: venv  ## refresh the four EMA families (IDS=..., ARGS="--periods 10,20")
	$(TA) refresh --targets emas --ids $(IDS) $(ARGS)

daily-refresh: venv  ## bars then EMAs for all active assets, as the scheduled run does
	$(TA) refresh --all --ids $(IDS) $(ARGS)

dry-run: venv  ## plan only: log per asset and component what would change, write nothing
	$(TA) refresh --all --ids $(IDS) --dry-run $(ARGS)

validate: venv  ## run the validation checks and print PASS/WARN/FAIL
	$(TA) validate --ids $(IDS)

clean-logs:  ## delete Airflow task logs older than $$LOG_RETENTION_DAYS (default 30) under .local/
	find .local -path '*/logs/*' -type f -mtime +$${LOG_RETENTION_DAYS:-30} -delete 2>/dev/null || true
	find .local -path '*/logs/*' -type d -empty -delete 2>/dev/null || true

up:  ## start Airflow (CeleryExecutor) + Postgres + Redis with docker compose
	docker compose up -d

down:  ## stop the docker compose stack
	docker compose down

bench: venv  ## measure the refresh engine vs the raw COPY floor at 100 and 1,000 assets; writes docs/BENCHMARKS.md
	$(TA) bench $(ARGS)

lint: venv  ## ruff (incl. Airflow AIR3 rules) and mypy
	$(BIN)/ruff check plugins dags tests
	$(BIN)/mypy

lock: venv  ## regenerate requirements.txt from a fresh resolve (see docs/DEPENDENCIES.md)
	bash .ci/lock.sh
