# AVERE reproducibility kit.  Two commands do everything on a fresh machine:
#   make reproduce   set up, then run the whole pipeline on the embedded default (tiny, CPU)
#   make test        set up, then run the unit tests and the notebooks under nbval
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= tiny

# Kernel runtime files stay inside the repo (CI leaves no state behind); no hub access at run time.
export JUPYTER_RUNTIME_DIR := $(CURDIR)/.jupyter_runtime
export JUPYTER_PLATFORM_DIRS := 1
export MPLBACKEND := Agg
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: setup reproduce test test-fast unit nbval lint lab bench verify-reference clean setup-gpu

setup: $(STAMP)

# torch first: the pinned CPU wheel; otherwise a dependency would pull a multi-GB CUDA build.
# The venv must be byte-compiled: these machines set PYTHONDONTWRITEBYTECODE=1, so without .pyc files every
# process (each kernel, each CLI run) compiles torch and transformers from source on import, and the unit
# tier ran minutes longer.  pip compiles one file at a time (54 of a fresh set-up's 95 s here); compileall
# on every core makes the same 19,809 .pyc files, 13 s sooner.  A file that does not compile is skipped, as
# pip skips it.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile torch==2.13.0
	$(BIN)/pip install -q --no-compile -r requirements.lock
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (avere kit)" >/dev/null
	touch $(STAMP)

# The CUDA environment, for a GPU machine only (never part of `make test`): requirements-gpu.lock is
# requirements.lock with torch and torchvision as CUDA 12.8 builds from the PyTorch index (tests/test_gpu_lock.py
# checks every other pin is the same).  One resolve: the lock pins torch's local version (+cu128), which only
# that index serves; everything else comes from PyPI.  It stamps the CPU set-up too, so `make reproduce` and
# `make test` use this environment instead of reinstalling the CPU wheel.  Then: docs/paper_run.md.
TORCH_INDEX ?= https://download.pytorch.org/whl/cu128
setup-gpu: requirements-gpu.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --no-compile --extra-index-url $(TORCH_INDEX) -r requirements-gpu.lock
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib >/dev/null || true
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (avere kit)" >/dev/null
	$(BIN)/python -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available', torch.cuda.is_available(), 'GPUs', torch.cuda.device_count())"
	touch $(STAMP)

reproduce: setup
	$(BIN)/avere-kit run --profile $(PROFILE)

# The two tiers run side by side: every torch in them uses one thread (the notebooks through their
# torch_threads param, the unit tier through OMP_NUM_THREADS), so they share 2 cores without slowing
# each other's kernels down.
test: setup
	$(MAKE) --no-print-directory -j2 unit nbval

# The fast tier for daily work: pure functions and fakes, no model built, no pipeline run (< 2 min).
test-fast: setup
	$(BIN)/pytest -q -m "not slow and not model and not learning" tests

unit: setup
	OMP_NUM_THREADS=1 $(BIN)/pytest -q --durations=15 -m "not learning" tests

# Notebooks in order (01 -> 08) at their tiny defaults, written into a fresh folder (AVERE_RUN_DIR), never
# into outputs/tiny: a pass can not lean on a stale `make reproduce`.  Then tests/test_learning.py reads
# what they recorded (learning thresholds live there, not in notebook cells).
nbval: setup
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
		AVERE_RUN_DIR=$$tmp/tiny $(BIN)/pytest -q --durations=15 --nbval-lax -p no:cacheprovider notebooks/ tests/test_learning.py

lint: setup
	$(BIN)/ruff check avere_utils tests bench

# Research containers often run as root: --allow-root.  The token comes from JUPYTER_TOKEN when set
# (Jupyter reads it itself), else Jupyter prints one.  LAB_IP=0.0.0.0 serves other machines too.
LAB_PORT ?= 8888
LAB_IP ?= 127.0.0.1
lab: setup
	$(BIN)/jupyter lab --notebook-dir=notebooks --allow-root --no-browser --ip=$(LAB_IP) --port=$(LAB_PORT) \
		--ServerApp.port_retries=0

# Figures go to outputs/bench/*.json.  The two-process training check needs a tiny run's reference model
# and pairs (make reproduce first); it is skipped, saying so, when they are absent.
bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done
	@if [ -d outputs/tiny/models/reference ] && [ -d outputs/tiny/pairs ]; then \
		echo "== bench/multiprocess_check.py"; $(BIN)/python bench/multiprocess_check.py; \
	else echo "== bench/multiprocess_check.py skipped: run 'make reproduce' first (needs outputs/tiny)"; fi

verify-reference: setup
	$(BIN)/python -m avere_utils.verify --profile tiny --out outputs/verify --reference outputs/reference

clean:
	rm -rf outputs/tiny outputs/verify outputs/bench .jupyter_runtime
