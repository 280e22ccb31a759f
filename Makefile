# Two entry points for a new machine; each installs what it needs.
#   make demo   the instrumented HVAC demo on embedded defaults, under realistic load
#   make test   unit + integration tests against real servers
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The venv's console scripts (check-jsonschema, opentelemetry-instrument, uvicorn, ...) come first, so a
# shell that activated nothing runs the same tools as CI; the tests also find them beside sys.executable.
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: demo test lint render bench soak system-deps collector servers matrix clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/sizewise-otel demo --load

system-deps:
	bash scripts/install-system-deps.sh

# The single-node distribution (0.165.1) and the HA tiers' one (loadbalancing + tail_sampling, 0.161.0:
# the newest release whose modules the Go module proxy serves for both; see collector/builder-config-ha.yaml).
collector:
	bash scripts/build-collector.sh
	bash scripts/build-collector.sh ha

# Prometheus, promtool, Alertmanager, amtool and kustomize at the versions compose.yaml pins, built
# from the Go module proxy once and cached under build/tools/ (the first Prometheus build takes ~8 min).
servers:
	bash scripts/build-servers.sh

test: $(STAMP) system-deps collector servers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/sizewise-otel render --check
	$(PY) -m pytest -q -p no:cacheprovider

# The unit suite plus a smoke set of integration tests on the floor and middle versions of every
# package a host service shares (ci/locks/*.txt; docs/compatibility.md). `make test` is the newest cell.
# The two cells run side by side (one pytest process per core; each fixture takes its own free ports
# and temp dirs): CI time is the slower cell's, not the sum.
matrix: $(STAMP) system-deps collector servers
	bash scripts/matrix.sh venv floor middle
	bash scripts/matrix.sh floor & floor=$$!; bash scripts/matrix.sh middle; middle=$$?; \
	  wait $$floor; floor=$$?; [ $$floor = 0 ] && [ $$middle = 0 ]

lint: $(STAMP)
	$(VENV)/bin/ruff check .

render: $(STAMP)
	$(VENV)/bin/sizewise-otel render

bench: $(STAMP) system-deps collector
	$(PY) bench/run.py

soak: $(STAMP) system-deps
	$(PY) bench/soak.py --minutes 10

clean:
	rm -rf $(VENV) build
