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

.PHONY: help venv demo test test-fast bars emas daily-refresh dry-run validate clean-logs env up down airflow airflow-stop screenshots bench lint lock

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

bars: venv  ## refresh the six bar families (IDS=1,52 ARGS="--builders 1d,multi_tf --quiet")
	$(TA) refresh --bars --ids $(IDS) $(ARGS)

emas: venv  ## refresh the four EMA families, freshness gate first (IDS=..., ARGS="--periods 10,20")
	$(TA) refresh --emas --ids $(IDS) $(ARGS)

daily-refresh: venv  ## bars, gate, EMAs, validation, summary for all active assets, as the scheduled run does
	$(TA) refresh --all --ids $(IDS) $(ARGS)

dry-run: venv  ## plan only: log per asset and component what would change, write nothing
	$(TA) refresh --all --ids $(IDS) --dry-run $(ARGS)

validate: venv  ## run the validation checks and print PASS/WARN/FAIL
	$(TA) validate --ids $(IDS)

clean-logs:  ## delete Airflow task logs older than $$LOG_RETENTION_DAYS (default 30) under .local/
	find .local -path '*/logs/*' -type f -mtime +$${LOG_RETENTION_DAYS:-30} -delete 2>/dev/null || true
	find .local -path '*/logs/*' -type d -empty -delete 2>/dev/null || true

airflow: venv  ## start a local Airflow 3 UI in the background (no Docker) and print URL, user, password
	$(BIN)/python -m ta_lab2.local_airflow start

airflow-stop:  ## stop the local Airflow of `make airflow` (no process left)
	$(BIN)/python -m ta_lab2.local_airflow stop

screenshots: venv  ## PNGs of the running `make airflow` UI (system chromium) into docs/img/
	$(BIN)/python -m ta_lab2.screenshots --out docs/img

env:  ## write .env with fresh random secrets for docker compose (never overwrites one)
	python3 deploy/make_env.py .env

up:  ## build the image and start Airflow (CeleryExecutor) + Postgres + Redis; needs .env (make env)
	@test -f .env || { echo "make up: no .env here; run 'make env' (or copy .env.example to .env and fill it in)"; exit 1; }
	@for v in $$(python3 -c 'import sys; sys.path.insert(0, "deploy"); import make_env; print(*make_env.REQUIRED)'); do \
	  grep -Eq "^$$v=." .env && ! grep -Eq "^$$v=change-me" .env || \
	  { echo "make up: .env does not set $$v (or it is the .env.example placeholder); run 'make env' or edit .env"; exit 1; }; \
	done
	docker compose up -d --build

down:  ## stop the docker compose stack
	docker compose down

bench: venv  ## refresh engine vs the raw COPY floor at 100 and 1,000 assets + a LocalExecutor DAG run at 1,000; writes docs/BENCHMARKS.md
	$(TA) bench $(ARGS)

lint: venv  ## ruff (incl. Airflow AIR3 rules) and mypy
	$(BIN)/ruff check plugins dags tests
	$(BIN)/mypy

lock: venv  ## regenerate requirements-runtime.txt and requirements.txt from fresh resolves (docs/DEPENDENCIES.md)
	bash .ci/lock.sh
