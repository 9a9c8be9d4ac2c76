# Reeve's tasks. Everything a target needs is installed by the target itself:
# a virtualenv from PyPI, and the Telegram emulator from npm.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
PLUGINS := $(wildcard plugins/*/pyproject.toml)
EMULATOR := tests/emulator/node_modules/.installed
TEST_ENV := TERM=unknown NO_COLOR=1 COLUMNS=100
PYTEST_ARGS ?=

.PHONY: all install run test unit lint format docs completions bench clean

all: test

$(BIN)/.installed: pyproject.toml $(PLUGINS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]" $(foreach p,$(dir $(PLUGINS)),-e $(p))
	touch $@

install: $(BIN)/.installed

# The Telegram Bot API emulator (npm 'telegram-test-api'), pinned by its lock file.
$(EMULATOR): tests/emulator/package.json tests/emulator/package-lock.json
	cd tests/emulator && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Install everything and run the daemon on the embedded SQLite default.
run: install
	$(BIN)/reeve daemon

# Install everything, check lint and types, then run the whole test suite.
test: install $(EMULATOR) lint
	$(TEST_ENV) $(BIN)/pytest $(PYTEST_ARGS)

unit: install
	$(TEST_ENV) $(BIN)/pytest -m "not e2e and not node" $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check reeve_cli plugins tests bench
	$(BIN)/ruff format --check reeve_cli plugins tests bench
	$(BIN)/mypy reeve_cli
	$(BIN)/cog --check README.md docs/*.md
	$(PY) -m reeve_cli.completion check

format: install
	$(BIN)/ruff format reeve_cli plugins tests bench
	$(BIN)/ruff check --fix reeve_cli plugins tests bench

docs: install
	$(BIN)/cog -r README.md docs/*.md

completions: install
	$(PY) -m reeve_cli.completion completions

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) tests/emulator/node_modules .pytest_cache .mypy_cache .ruff_cache
