# CityOS: the only entry points a user needs.
#   make demo    build the demo city and serve it (prints the URL and a dev API key)
#   make test    the whole test suite against the real PostgreSQL, Mosquitto, Redis, NATS
#   make bench   every benchmark in bench/ (one table each)
#   make lint    ruff
#   make conformance   the ETSI NGSI-LD suite (Consumption, Provision, Subscription) against
#                the pass list tests/conformance/expected-pass.txt (docs/conformance.md)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# reinstall only when the package metadata (or a front-end lock file) changes
STAMP := $(VENV)/.cityos-installed
FRONTEND := $(wildcard package.json package-lock.json)
ENSURE_SERVICES := if [ -f scripts/ensure-services.sh ]; then bash scripts/ensure-services.sh; fi
BENCH ?= $(sort $(filter-out bench/_%,$(wildcard bench/*.py)))
PYTEST_ARGS ?=

.PHONY: venv demo test bench lint conformance

venv: $(STAMP)

# front-end hook: once a package.json exists (dashboard build, browser tests), npm ci runs
# pip and npm show what they fetch and build: a fresh install takes minutes
$(STAMP): pyproject.toml $(FRONTEND)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "== installing Python packages into $(VENV) (a few minutes on a fresh machine)"
	$(BIN)/python -m pip install -e '.[postgres,bus,test]'
	@if [ -f package.json ]; then \
		echo "== installing front-end packages (npm ci)"; npm ci; fi
	touch $@

# the demo build reports each app's builder on stderr (`cityos --quiet demo`: silent)
demo: venv
	$(BIN)/cityos demo

test: venv
	$(ENSURE_SERVICES)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: venv
	$(ENSURE_SERVICES)
	@echo "== installing the benchmarks' baselines (MintPy and its dependencies)"
	$(BIN)/python -m pip install -e '.[postgres,bus,test,bench]'
	@set -e; for script in $(BENCH); do \
		echo "== $$script"; $(BIN)/python $$script; done

lint: venv
	$(BIN)/ruff check cityos tests bench

# the whole suite (minutes); CI runs the quick groups only (.ci/run)
conformance: venv
	bash scripts/conformance.sh
