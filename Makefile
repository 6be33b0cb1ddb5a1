# shapnas: two commands do everything on a fresh machine with Python 3.11:
#   make book   -> installs, runs the workshop profile on the four phantom datasets, builds the book
#   make test   -> installs, runs the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROFILE ?= workshop
DATASETS ?= acdc,brats,kits,amos
SEED ?= 0
export OMP_NUM_THREADS ?= 2
export PYTHONHASHSEED := 0

.PHONY: venv book test lab clean

venv: $(STAMP)

# torch is installed first and pinned so the CPU build is taken (an unpinned torch pulls the CUDA build).
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(PY) -m shapnas run --datasets $(DATASETS) --profile $(PROFILE) --seed $(SEED)
	$(PY) -m shapnas book

test: $(STAMP)
	$(PY) -m pytest -q

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf _build book/datasets
