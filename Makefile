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

.PHONY: venv book test lab clean chromium

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

# The browser test needs Debian's chromium; it is installed here when missing (root, or sudo).
test: $(STAMP) chromium
	$(PY) -m pytest -q

chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean:
	rm -rf _build book/datasets artifacts
