# The commands the README gives. .venv installs from the hashed locks in requirements/,
# which `make lock` writes from pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check
# Throwaway venvs for uv (writes the locks) and pip-audit, kept out of .venv.
TOOLS := .tools
UV_VERSION := 0.13.9
LOCK_FOR := --python-version 3.11 --python-platform x86_64-manylinux_2_28
COMPILE := $(TOOLS)/lock/bin/uv pip compile --quiet --generate-hashes $(LOCK_FOR) \
	--custom-compile-command 'make lock' $(UV_FLAGS)

.PHONY: run test coverage test-deep deep-tools lint openapi bench lock audit clean

# One stamp per lock, redone when that lock or the project's metadata changes. The test
# lock pins whatever the run lock pins alike, so either can install over the other.
# The project goes in last, without its dependencies and with the locked setuptools
# rather than an unhashed one fetched for an isolated build.
$(VENV)/.installed-%: requirements/%.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --require-hashes -r $<
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	touch $@

## run: serve on 127.0.0.1:$${PORT:-8000}; embedded PostgreSQL under .data/ unless IDENTITY_DATABASE_URL is set
run: $(VENV)/.installed-run
	exec $(BIN)/identity serve

# Two workers (one per core here), each on its own database; each takes a share of the
# tests in order and then helps the other with what it has left. (Not --dist loadgroup
# or loadscope: schemathesis gives each operation's test the same node id, and those
# would run one of them.)
PARALLEL := -n auto --dist worksteal

# The tests' bytecode (pytest's rewritten modules too) is kept in __pycache__, which git
# ignores, whatever PYTHONDONTWRITEBYTECODE says: compiling every package again costs
# each worker about 10 s of CPU before its first test, and each server a test starts more.
test test-deep: export PYTHONDONTWRITEBYTECODE :=

## test: lint, architecture contracts and the whole suite against a real PostgreSQL, but
## the `install`, `deep` and `replicas` tests; prints the 15 slowest tests
test: $(VENV)/.installed-test lint
	$(BIN)/pytest $(PARALLEL) -m "not install and not deep and not replicas" --durations=15

## coverage: the suite of `make test` under coverage (half as slow again), with the
## coverage of identity/ line by line
coverage: $(VENV)/.installed-test
	$(BIN)/pytest $(PARALLEL) -m "not install and not deep and not replicas" -q \
		--cov=identity --cov-report=term:skip-covered

## test-deep: the contract fuzzing at 200 cases per operation (100 stateful scenarios),
## the `install` tests (build the wheel, run an installed copy's commands) and the `deep`
## ones: /docs in headless Chromium, the image built and run with podman, two replicas
## behind HAProxy under a kill and a rolling restart
test-deep: $(VENV)/.installed-test deep-tools
	IDENTITY_TEST_FUZZ_EXAMPLES=200 $(BIN)/pytest $(PARALLEL) --durations=15 \
		tests/api/test_contract_fuzz.py tests/test_install.py \
		tests/api/test_docs_browser.py tests/test_container.py tests/test_replicas.py

# Debian's packages the `deep` tests drive, installed when missing and make runs as root;
# otherwise those tests skip and say what to install.
DEEP_TOOLS := chromium chromedriver podman runc debootstrap haproxy
DEEP_PACKAGES := chromium chromium-driver podman runc debootstrap haproxy
deep-tools:
	@missing=$$(for tool in $(DEEP_TOOLS); do command -v $$tool >/dev/null || echo $$tool; done); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(DEEP_PACKAGES); \
	elif [ -n "$$missing" ]; then \
		echo "missing: $$missing; their tests skip (as root: apt-get install -y $(DEEP_PACKAGES))"; \
	fi

lint: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

## openapi: regenerate the committed OpenAPI document
openapi: $(VENV)/.installed-run
	$(BIN)/identity openapi write openapi/openapi.json

## bench: the load runs (not part of `make test`); prints ratios against a baseline in the same run
bench: $(VENV)/.installed-test
	$(BIN)/python bench/lookup.py
	$(BIN)/python bench/import_profiles.py
	$(BIN)/python bench/slow_clients.py
	$(BIN)/python bench/mail_delivery.py
	$(BIN)/python bench/accounts.py
	$(BIN)/python bench/unsubscribe_tokens.py
	$(BIN)/python bench/unsubscribe.py
	$(BIN)/python bench/newsletter_export.py
	$(BIN)/python bench/companies.py
	$(BIN)/python bench/metrics.py

## lock: write requirements/*.txt from pyproject.toml for Python 3.11 on Linux x86_64;
## keeps the pins that still fit (UV_FLAGS=--upgrade: the newest that fit). image.txt is
## what the container image installs: run.txt's pins without the embedded PostgreSQL
## (the image is given its database)
lock:
	test -x $(TOOLS)/lock/bin/uv || { $(PYTHON) -m venv $(TOOLS)/lock && \
		$(TOOLS)/lock/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION); }
	$(COMPILE) pyproject.toml --extra embedded --group build -o requirements/run.txt
	$(COMPILE) pyproject.toml --extra embedded --extra dev --group build \
		-c requirements/run.txt -o requirements/test.txt
	$(COMPILE) pyproject.toml --group build -c requirements/run.txt -o requirements/image.txt
	$(COMPILE) --group pyproject.toml:audit -o requirements/audit.txt

$(TOOLS)/.installed-audit: requirements/audit.txt
	test -x $(TOOLS)/audit/bin/python || $(PYTHON) -m venv $(TOOLS)/audit
	$(TOOLS)/audit/bin/python -m pip install --quiet --disable-pip-version-check \
		--require-hashes -r $<
	touch $@

## audit: known vulnerabilities of the run lock's packages (not part of `make test`); fails
## unless every package was checked, so also when no vulnerability database answers
audit: $(TOOLS)/.installed-audit
	$(TOOLS)/audit/bin/python scripts/audit.py requirements/run.txt

clean:
	rm -rf $(VENV) $(TOOLS) .data .pytest_cache
