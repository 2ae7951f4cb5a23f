# Self-documenting: `make` or `make help` lists every target with the comment above it.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed-from-lock
# requirements.lock is resolved for Python 3.11: find it by name, else take python3 if it is 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || \
	{ python3 -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null && command -v python3; })
# Debian packages the test suite drives: a real browser for the pages people open, Prometheus
# with its Pushgateway for the monitoring configuration, Redis for the shared rate limit, wrk
# for the load and overload tests, PostgreSQL under the retraining flow's MLflow server, and curl
# for the README's example.
TEST_SYSTEM_PACKAGES ?= chromium curl postgresql prometheus prometheus-pushgateway redis-server wrk
# The prediction log `make monitor` reads (the service writes it where BOSTON_API_LOG_SINK says).
LOG ?= predictions.jsonl
# The new labelled rows `make retrain` takes: a CSV in the raw file's contract, or a folder of them.
NEW ?= data/incoming
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

## help: list the targets
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

$(STAMP): requirements.lock
	@test -n "$(PYTHON)" || { echo "make: this project needs Python 3.11 (python3.11, or python3" \
		"at 3.11) because requirements.lock is resolved for 3.11; install it and run make again" >&2; \
		exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	touch $@

## venv: create .venv from requirements.lock (every transitive dependency pinned and hashed)
.PHONY: venv
venv: $(STAMP)

## repro: the environment from the lock file, then the whole pipeline (dvc repro)
.PHONY: repro
repro: venv
	dvc repro

## test: the whole test suite, end-to-end tests included (what CI runs); installs missing Debian packages
.PHONY: test
test: venv
	bash tools/system_packages.sh $(TEST_SYSTEM_PACKAGES)
	pytest

## test-fast: the suite without the end-to-end tests (real pipeline, server, MLflow server)
.PHONY: test-fast
test-fast: venv
	pytest -m "not e2e"

## lint: ruff (lint and format check), mypy, notebooks without outputs, dvc.lock current
.PHONY: lint
lint: venv
	ruff check .
	ruff format --check .
	mypy
	nbstripout --keep-id --verify notebooks/*.ipynb
	python -m tools.check_dvc_lock

## format: apply ruff's fixes and formatting, strip notebook outputs
.PHONY: format
format: venv
	ruff check --fix .
	ruff format .
	nbstripout --keep-id notebooks/*.ipynb

## hooks: install the pre-commit hooks (the same checks as make lint, run on each commit)
.PHONY: hooks
hooks: venv
	pre-commit install

## eda: open the exploratory notebook in JupyterLab (dvc repro renders it to reports/)
.PHONY: eda
eda: venv
	jupyter lab notebooks/exploring_data_analysis.ipynb

## lock: re-resolve requirements.lock and api/requirements.txt after editing pyproject.toml
.PHONY: lock
lock: venv
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --quiet -o requirements.lock
	uv pip compile api/requirements.in --constraint requirements.lock --generate-hashes \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet -o api/requirements.txt

## serve: the API on http://127.0.0.1:8000 (docs at /docs) via python -m api; WEB_CONCURRENCY=2: two workers
.PHONY: serve
serve: venv
	python -m api

# Browsing needs no background job runner (it prints tracebacks at Ctrl-C), and MLflow's own
# import of a deprecated Starlette module is not the user's to act on.
## mlflow-ui: browse every run, its params, metrics and model (http://127.0.0.1:5000)
.PHONY: mlflow-ui
mlflow-ui: venv
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	PYTHONWARNINGS="ignore:starlette.middleware.wsgi is deprecated" \
		mlflow ui --backend-store-uri sqlite:///mlflow.db

## tune-compare: grid vs Optuna (and no early stopping, monotone) on the same folds: RMSE, time, size (docs/results/)
.PHONY: tune-compare
tune-compare: venv
	python -m tools.tune_compare --results docs/results/tune-compare.md

## benchmark: /predict vs an empty endpoint, rate limit on/off, 1 vs 2 workers, a 10,000-row batch vs mlflow (docs/results/)
.PHONY: benchmark
benchmark: venv
	python -m tools.benchmark --results docs/results/benchmark.md

## loadtest: two workers at saturation for 60 s, then a 2,048-connection flood; LOADTEST_ARGS="--seconds 20" for less
.PHONY: loadtest
loadtest: venv
	bash tools/system_packages.sh wrk
	python -m tools.loadtest $(LOADTEST_ARGS)

## monitor-volume: the drift and performance reports on 1, 3 and 10 million log lines: time, peak memory (docs/results/)
.PHONY: monitor-volume
monitor-volume: venv
	python -m tools.monitor_volume --results docs/results/monitor-volume.md

## monitor: drift report of a prediction log (LOG=path, .gz allowed) against the model's reference
.PHONY: monitor
monitor: venv
	python -m monitoring.report --log $(LOG)

## performance: the served model's realised RMSE and MAE per window, from predictions joined with /feedback labels (LOG=path ...)
.PHONY: performance
performance: venv
	python -m monitoring.performance --log $(LOG)

## performance-calibration: false-alarm and detection rates of the degraded rule, by simulation (docs/results/)
.PHONY: performance-calibration
performance-calibration: venv
	python -m studies.degradation_calibration --results docs/results/performance-calibration.md

## monitor-calibration: false-alarm and detection rates of the drift rule, windows of 200 to 100,000 rows; about 40 min (docs/results/)
.PHONY: monitor-calibration
monitor-calibration: venv
	python -m studies.drift_calibration --results docs/results/monitor-calibration.md

## interval-calibration: coverage and width of the prediction intervals over 200 fresh splits, 3 price groups vs 1; about 14 min (docs/results/)
.PHONY: interval-calibration
interval-calibration: venv
	python -m studies.interval_calibration --results docs/results/interval-calibration.md

## coverage-calibration: false-alarm and detection rates of the interval-coverage verdict, by simulation (docs/results/)
.PHONY: coverage-calibration
coverage-calibration: venv
	python -m studies.coverage_calibration --results docs/results/coverage-calibration.md

## retrain: the Prefect retraining flow on new rows (NEW=CSV or folder, or FEEDBACK=logs; SERVICE=URL)
.PHONY: retrain
retrain: venv
	python -m flows run $(if $(FEEDBACK),--feedback $(FEEDBACK),--new-data $(NEW)) \
		$(if $(SERVICE),--service-url $(SERVICE))

## rollback: serve the model before the last promotion again (SERVICE=URL to reload)
.PHONY: rollback
rollback: venv
	python -m flows rollback $(if $(SERVICE),--service-url $(SERVICE))

## retrain-calibration: how often the promotion rule promotes a worse, equal or better challenger (docs/results/)
.PHONY: retrain-calibration
retrain-calibration: venv
	python -m studies.promotion_calibration --results docs/results/retrain-calibration.md

## container: build the image (docker, or podman here), run it, check /health and /predict
.PHONY: container
container:
	bash tools/container_check.sh
