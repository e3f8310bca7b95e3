# The two commands a new user runs: `make demo` and `make test`. Each sets up .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED_DATA := $(abspath ../shared/datasets)
ifneq ($(wildcard $(SHARED_DATA)),)
export RECFB_DATA_DIR ?= $(SHARED_DATA)
endif

.PHONY: demo test bench lint clean install

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,graph,serve]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/recfb demo

test: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) benchmarks/evaluation.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
