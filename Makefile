# The book and its companion package. `make test` and `make book` are all a reader needs;
# both create .venv (stdlib venv) and install the pinned CPU stack on first use. `make test`
# also builds the book and reads every page offline in headless Chromium (tests/browser).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS ?= tf-cpu,book,test
NOTEBOOKS := $(wildcard book/*.ipynb)
JOBS ?= 2

# TensorFlow's start-up lines would otherwise land in stored notebook outputs.
export TF_CPP_MIN_LOG_LEVEL := 2
export TF_ENABLE_ONEDNN_OPTS := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1
# The tests run two notebooks (or test files) at a time on two cores, each with a thread per
# core. OpenMP threads that spin while they wait (300,000 turns by default) take the core the
# other process needs: a notebook's training ran 3x slower beside another, and 19x under the
# SSE4.1 kernels of test-numerics. Sleeping at once (OMP_WAIT_POLICY=PASSIVE) cures that but
# slows a process alone, 4x under SSE4.1; a short spin is close to the best of both.
export GOMP_SPINCOUNT := 1000

.PHONY: help install test unit nbval test-numerics book browser bench results gpu-check execute lint format clean distclean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 15

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[$(EXTRAS)]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install the package with its pinned extras

PYTEST := $(BIN)/python -m pytest -n $(JOBS) --dist loadfile
NBVAL := --nbval --nbval-current-env --nbval-sanitize-with book/sanitize.cfg
# Keras code must run on both backends; the backend is fixed per process, so the Keras
# tests run a second time under KERAS_BACKEND=torch.
KERAS_TORCH_RUN = $(if $(wildcard tests/keras),KERAS_BACKEND=torch $(PYTEST) tests/keras companion/keras --doctest-modules)
# tests/browser reads the built book, so the runs before the book is built leave it out.
NOT_BROWSER := --ignore=tests/browser
# From an empty _build/html: Sphinx never deletes pages of an earlier build, and viewcode
# keeps its source pages when the module is older than them.
BUILD_BOOK := rm -rf _build/html && $(BIN)/jupyter-book build --all --warningiserror --nitpick --keep-going .
# One headless Chromium for all pages, so not spread over pytest-xdist workers.
BROWSER_TEST := $(BIN)/python -m pytest tests/browser

test: $(STAMP)  ## unit tests, doctests, every notebook under nbval, then build the book and read it offline
	KERAS_BACKEND=tensorflow $(PYTEST) tests companion $(NOT_BROWSER) --doctest-modules $(NBVAL) $(NOTEBOOKS)
	$(KERAS_TORCH_RUN)
	$(BUILD_BOOK)
	$(BROWSER_TEST)

unit: $(STAMP)  ## unit tests and doctests only (both Keras backends)
	KERAS_BACKEND=tensorflow $(PYTEST) tests companion $(NOT_BROWSER) --doctest-modules
	$(KERAS_TORCH_RUN)

nbval: $(STAMP)  ## notebooks only, outputs compared with the stored ones
	$(PYTEST) $(NBVAL) $(NOTEBOOKS)

# Every notebook (they train, sample or draw random inputs): each assertion must hold in every
# numerical environment of tools/numerics.py, which round floats as other CPUs do. CI runs the
# cheapest pair that catches an assertion true only on the machine that wrote it.
NUMERICS_NOTEBOOKS := $(NOTEBOOKS)
NUMERICS_ENVS ?= aten-default aten-avx2 onednn-sse41 one-thread

test-numerics: $(STAMP)  ## every notebook under nbval in each numerical environment (other CPUs' rounding)
	$(BIN)/python tools/numerics.py --jobs $(JOBS) $(addprefix --env ,$(NUMERICS_ENVS)) $(NUMERICS_NOTEBOOKS)

book: $(STAMP)  ## execute every notebook and build the HTML book into _build/html
	$(BUILD_BOOK)
	@echo "Open file://$(CURDIR)/_build/html/index.html"

browser: $(STAMP)  ## open every page of the built book in offline Chromium (BOOK_HTML=dir)
	$(BROWSER_TEST)

bench: $(STAMP)  ## run the benchmarks in benchmarks/ (installs the bench extra: MONAI)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[bench]"
	@for script in benchmarks/[!_]*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

results: $(STAMP)  ## retrain the stored class-imbalance runs at 256x256 (book/results/; hours on a CPU)
	$(BIN)/python tools/results.py

gpu-check:  ## on a machine with CUDA: tests/cuda, then the benchmarks on the GPU (logs in gpu-check/)
	PYTHON=$(if $(wildcard $(BIN)/python),$(BIN)/python,python3) tools/gpu_check.sh gpu-check

execute: $(STAMP)  ## re-run every notebook in place, refreshing its stored outputs
	$(BIN)/python tools/execute_notebooks.py $(NOTEBOOKS)

lint: $(STAMP)  ## ruff over the package, the tests and the notebooks
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:  ## remove the built book and caches
	rm -rf _build .pytest_cache .ruff_cache
	find . -name __pycache__ -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean  ## also remove .venv
	rm -rf $(VENV)
