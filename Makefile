# One venv, one install, the same checks locally and in CI. `make help` lists the targets.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed

.PHONY: help venv check test test-fast lint protos run bench clean

## help: list the targets
help:
	@sed -n 's/^## //p' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## venv: create .venv and install the project with its dev tools
venv: $(STAMP)

## protos: regenerate service/generated from protos/ (a test fails when they are stale)
protos: $(STAMP)
	$(PY) -m service.protogen

## lint: ruff format --check, ruff check, mypy (strict)
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy trainer service bench tests

## test: lint, types and the whole suite (slow end-to-end tests included), as CI runs it
test: lint
	$(BIN)/pytest -q

## check: the same as test: format, lint, types and every test
check: test

## test-fast: the same without the slow end-to-end tests
test-fast: lint
	$(BIN)/pytest -q -m 'not slow'

## run: train the default recipe (or RECIPE=...) if the alias is empty, then serve it and the MLflow UI
run: $(STAMP)
	$(PY) -m service.launcher $(if $(RECIPE),--recipe $(RECIPE))

## bench: bench.train, then bench.serve (without the MLServer comparison); see bench/README.md
bench: $(STAMP)
	$(PY) -m bench.train
	$(PY) -m bench.serve

## clean: remove .venv and the tools' caches
clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
