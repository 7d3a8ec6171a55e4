# One venv, one install, the same checks locally and in CI.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
# Tests read MNIST from the shared offline copy unless MNIST_DATA_DIR says otherwise.
TEST_ENV := MNIST_DATA_DIR=$${MNIST_DATA_DIR:-$(abspath ../shared/data)}
PROTOS := $(shell find protos -name '*.proto')

.PHONY: venv test test-fast check lint protos run bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

## protos: regenerate service/generated from protos/ (a test fails when they are stale)
protos: $(STAMP)
	$(PY) -m service.protogen

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy trainer service bench tests

## test: lint, types and the whole suite (slow end-to-end tests included)
test: lint
	$(TEST_ENV) $(BIN)/pytest -q

## test-fast: the same without the slow end-to-end tests
test-fast: lint
	$(TEST_ENV) $(BIN)/pytest -q -m 'not slow'

## run: train the default recipe (or RECIPE=...) if the alias is empty, then serve it and the MLflow UI
run: $(STAMP)
	$(PY) -m service.launcher $(if $(RECIPE),--recipe $(RECIPE))

bench: $(STAMP)
	$(TEST_ENV) $(PY) bench/train.py
	$(TEST_ENV) $(PY) bench/serve.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
