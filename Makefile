# wattkeeper: `make demo` runs the appliance, `make test` runs the tests, `make image` builds
# the Raspberry Pi image.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help deps deps-arm deps-image venv influxd container-image image test test-unit test-molecule test-arm test-arm64 test-armhf test-image test-faults lint format generate dashboards demo demo-show demo-clean bench wheel clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

deps: ## install the Debian packages the tests and the demo need (podman, debootstrap)
	bash scripts/install-deps.sh

deps-arm: ## + qemu-user-static and binfmt_misc, so arm64/armhf code runs here (make test-arm)
	bash scripts/install-deps.sh arm

deps-image: ## + what make image needs (qemu-system-arm, dosfstools, mtools, parted)
	bash scripts/install-deps.sh image

$(VENV)/.installed: requirements-dev.txt agents/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt -e 'agents[luxtronik,mqtt]'
	touch $@

venv: $(VENV)/.installed ## create the virtualenv with the agent and the dev tools

influxd: ## find or build the InfluxDB 2 used by tests and demo (cached in ~/.cache/wattkeeper)
	bash scripts/build-influxd.sh

container-image: ## build (once) the Debian bookworm systemd image the scenario and the demo boot
	bash scripts/build-image.sh >/dev/null

image: deps-image venv ## the Raspberry Pi SD-card image (arm64) with the collector: dist/wattkeeper-pi-arm64.img
	bash scripts/build-pi-image.sh

test: test-unit test-molecule ## every test: pytest (real InfluxDB, simulators), then the Molecule scenario

# Parallel pytest workers (pytest-xdist): most tests wait on agents, simulators and
# outages rather than on the CPU, so more workers than the 2 cores pay off; each worker
# has its own InfluxDB. Measured in docs/testing-ansible.md. PYTEST_WORKERS=0: serial.
PYTEST_WORKERS ?= 4

test-unit: deps venv influxd ## the pytest suite only (parallel workers, slowest tests listed)
	$(PY) -m pytest tests -m "not faults" -n $(PYTEST_WORKERS) --dist load --maxschedchunk 1 --durations=15

test-molecule: deps venv influxd container-image ## converge, idempotence, Testinfra verify on podman systemd hosts (default, then byo)
	WATTKEEPER_INFLUXD=$$(bash scripts/build-influxd.sh | tail -1) $(VENV)/bin/molecule test
	WATTKEEPER_INFLUXD=$$(bash scripts/build-influxd.sh | tail -1) $(VENV)/bin/molecule test -s byo

test-arm: test-arm64 test-armhf ## both arm collectors, emulated (about 10 min here with their images cached)

# The arm images' root filesystems are debootstrapped once (emulated second stage) and cached.
test-arm64: deps deps-arm venv influxd container-image ## the arm64 collector, emulated: converge, idempotence, verify (about 5 min; part of .ci/run)
	bash scripts/build-image.sh arm64 >/dev/null
	WATTKEEPER_INFLUXD=$$(bash scripts/build-influxd.sh | tail -1) nice -n 19 $(VENV)/bin/molecule test -s arm64

test-armhf: deps deps-arm venv influxd container-image ## the armhf (32-bit) collector, emulated: pulse and Octopus (about 5 min)
	bash scripts/build-image.sh armhf >/dev/null
	bash scripts/build-arm-wheels.sh >/dev/null
	WATTKEEPER_INFLUXD=$$(bash scripts/build-influxd.sh | tail -1) nice -n 19 $(VENV)/bin/molecule test -s armhf

test-image: deps-image venv influxd ## boot the Pi image (built if missing) under qemu-system-aarch64: first boot, agents against simulators
	[[ -f dist/wattkeeper-pi-arm64.img ]] || bash scripts/build-pi-image.sh
	WATTKEEPER_INFLUXD=$$(bash scripts/build-influxd.sh | tail -1) $(PY) -m pytest image/tests -v -s

test-faults: deps venv influxd ## the long fault cases (10-min network cut, 50 kills); figures in docs/faults.md
	$(PY) -m pytest tests -m faults -s; status=$$?; sed -n '/^| case/,$$p' docs/faults.md; exit $$status

lint: venv ## ruff, formatting, mypy, yamllint and ansible-lint (production profile)
	$(VENV)/bin/ruff check agents dashboards tests ansible molecule scripts image
	$(VENV)/bin/ruff format --check agents dashboards tests ansible molecule scripts image
	cd agents && ../$(VENV)/bin/mypy wattkeeper
	cd dashboards && ../$(VENV)/bin/mypy --strict wkdash generate.py
	$(VENV)/bin/yamllint -s .
	$(VENV)/bin/ansible-lint -q

format: venv ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix agents dashboards tests ansible molecule scripts image
	$(VENV)/bin/ruff format agents dashboards tests ansible molecule scripts image

generate: venv ## rewrite what derives from the sources' declarations (role specs, defaults, docs/config, role READMEs)
	$(PY) scripts/generate.py

dashboards: venv ## regenerate the Grafana dashboards (dashboards/*.json) from dashboards/wkdash
	$(PY) dashboards/generate.py

demo: deps venv influxd container-image ## the appliance on this machine: InfluxDB + a collector (podman), sources simulated
	bash scripts/demo.sh up

demo-show: venv ## show again what landed in the running demo
	bash scripts/demo.sh show

demo-clean: ## remove the demo's containers and state (keeps the cached image and influxd)
	bash scripts/demo.sh clean

bench: deps venv influxd container-image ## drain vs the limit, ingest, pulse, footprint, Telegraf side by side, provisioning, tiers (BENCH_ARGS="telegraf tiers" for some); writes docs/benchmarks.md
	$(PY) bench/run.py $(BENCH_ARGS)

wheel: venv ## build the agent wheel into dist/
	$(PY) -m build --wheel --outdir dist agents

clean: ## remove the virtualenv and build output (keeps ~/.cache/wattkeeper)
	rm -rf $(VENV) dist agents/build agents/*.egg-info
