# The commands the README gives. Everything installs into .venv from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint openapi bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

## run: serve on 127.0.0.1:$${PORT:-8000}; embedded PostgreSQL under .data/ unless IDENTITY_DATABASE_URL is set
run: $(STAMP)
	exec $(BIN)/identity serve

## test: lint, architecture contracts and the whole suite against a real PostgreSQL
test: $(STAMP) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

## openapi: regenerate the committed OpenAPI document
openapi: $(STAMP)
	$(BIN)/identity openapi write openapi/openapi.json

## bench: the load runs (not part of `make test`); prints ratios against a baseline in the same run
bench: $(STAMP)
	$(BIN)/python bench/lookup.py
	$(BIN)/python bench/import_profiles.py

clean:
	rm -rf $(VENV) .data .pytest_cache
