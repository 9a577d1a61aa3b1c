# The two commands: `make run` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: run test bench faults lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# What `make run` serves: dagd and what the example DAGs import (the `examples` extra).
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[examples]'
	touch $@

$(TEST_STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q -e '.[test,examples]'
	touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/dagd --config config/dagd.toml run

test: $(TEST_STAMP)
	$(BIN)/ruff check service tests bench plugins examples
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Fault and attack scenarios against a real `dagd run` (tests/faults/run.py --help);
# FAULTS_ARGS=--quick for the shorter CI run, --only NAME for one scenario.
faults: $(TEST_STAMP)
	$(BIN)/python tests/faults/run.py $(FAULTS_ARGS)

lint: $(TEST_STAMP)
	$(BIN)/ruff check service tests bench plugins examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .dagd build service/*.egg-info
