# collsim: the two commands a new user needs are `make demo` and `make test`.
# Each creates .venv if missing, installs the project with its test extra (only
# when pyproject.toml or setup.py changed), builds the Cython extensions in
# place (only what changed), then runs.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.collsim-installed
PYX    := $(shell find collsim collectives topologies plots -name '*.pyx' -o -name '*.pxd' -o -name '*.h' 2>/dev/null)

.PHONY: all build test demo bench clean

all: build

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP): pyproject.toml setup.py | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

.build-stamp: $(STAMP) $(PYX) setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $@

build: .build-stamp

test: build
	$(VENV)/bin/pytest -q

# One table, then the `demo` sweep (resumes if multirun/demo exists) and its figures.
demo: build
	$(VENV)/bin/collsim topology=trn2 cluster.nodes=64 algorithm=auto
	$(VENV)/bin/collsim -m experiment=demo
	$(VENV)/bin/collsim-plot multirun/demo --out plots/figures

bench: build
	$(PY) benchmarks/run_all.py

# Side by side with SimGrid SMPI (installs libsimgrid-dev when missing; see README).
# PEERS_ARGS passes options, e.g. make bench-peers PEERS_ARGS=--quick
.PHONY: bench-peers
bench-peers: build
	$(PY) benchmarks/smpi_vs_collsim.py $(PEERS_ARGS)

clean:
	rm -rf build .build-stamp *.egg-info
	find collsim collectives topologies plots \( -name '*.so' -o -name '*.c' \) -delete
