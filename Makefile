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

demo: build
	$(VENV)/bin/collsim topology=trn2 cluster.nodes=64 algorithm=auto

bench: build
	$(PY) benchmarks/run_all.py

clean:
	rm -rf build .build-stamp *.egg-info
	find collsim collectives topologies plots \( -name '*.so' -o -name '*.c' \) -delete
