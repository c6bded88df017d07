# wattkeeper: `make demo` runs the appliance, `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help deps venv influxd test test-faults lint format demo demo-clean bench wheel clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

deps: ## install the Debian packages the tests and the demo need (podman, debootstrap)
	bash scripts/install-deps.sh

$(VENV)/.installed: requirements-dev.txt agents/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e 'agents[luxtronik]'
	touch $@

venv: $(VENV)/.installed ## create the virtualenv with the agent and the dev tools

influxd: ## find or build the InfluxDB 2 used by tests and demo (cached in ~/.cache/wattkeeper)
	bash scripts/build-influxd.sh

test: venv influxd ## run the tests (real InfluxDB, simulators, systemd containers)
	$(PY) -m pytest tests -m "not faults"

test-faults: venv influxd ## the long fault cases (10-min network cut, 50 kills); figures in docs/faults.md
	$(PY) -m pytest tests -m faults -s; status=$$?; sed -n '/^| case/,$$p' docs/faults.md; exit $$status

lint: venv ## ruff, formatting and mypy
	$(VENV)/bin/ruff check agents tests
	$(VENV)/bin/ruff format --check agents tests
	cd agents && ../$(VENV)/bin/mypy wattkeeper

format: venv ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix agents tests
	$(VENV)/bin/ruff format agents tests

bench: venv influxd ## drain vs the limit, ingest, pulse rates, footprint; writes docs/benchmarks.md
	$(PY) bench/run.py

wheel: venv ## build the agent wheel into dist/
	$(PY) -m build --wheel --outdir dist agents

clean: ## remove the virtualenv and build output (keeps ~/.cache/wattkeeper)
	rm -rf $(VENV) dist agents/build agents/*.egg-info
