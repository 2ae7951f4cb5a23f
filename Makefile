# Self-documenting: `make` or `make help` lists every target with the comment above it.
.DEFAULT_GOAL := help
SHELL := /bin/bash
VENV := .venv
STAMP := $(VENV)/.installed-from-lock
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

## help: list the targets
.PHONY: help
help:
	@grep -E '^## ' $(MAKEFILE_LIST) | sed 's/^## /  /'

$(STAMP): requirements.lock
	python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	touch $@

## venv: create .venv from requirements.lock (every transitive dependency pinned and hashed)
.PHONY: venv
venv: $(STAMP)

## repro: the environment from the lock file, then the whole pipeline (dvc repro)
.PHONY: repro
repro: venv
	dvc repro

## test: the whole test suite, end-to-end tests included (what CI runs)
.PHONY: test
test: venv
	pytest

## test-fast: the suite without the end-to-end tests (real pipeline, server, MLflow server)
.PHONY: test-fast
test-fast: venv
	pytest -m "not e2e"

## lint: ruff (lint and format check) and mypy
.PHONY: lint
lint: venv
	ruff check .
	ruff format --check .
	mypy

## lock: re-resolve requirements.lock and api/requirements.txt after editing pyproject.toml
.PHONY: lock
lock: venv
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --quiet -o requirements.lock
	uv pip compile api/requirements.in --constraint requirements.lock --generate-hashes \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet -o api/requirements.txt

## serve: run the API on http://127.0.0.1:8000 (docs at /docs)
.PHONY: serve
serve: venv
	uvicorn api.main:app --host 127.0.0.1 --port 8000

## mlflow-ui: browse every run, its params, metrics and model (http://127.0.0.1:5000)
.PHONY: mlflow-ui
mlflow-ui: venv
	mlflow ui --backend-store-uri sqlite:///mlflow.db

## benchmark: /predict vs an empty endpoint vs mlflow models serve, under wrk
.PHONY: benchmark
benchmark: venv
	python -m tools.benchmark

## container: build the image (docker, or podman here), run it, check /health and /predict
.PHONY: container
container:
	bash tools/container_check.sh
