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

.PHONY: setup reproduce test test-fast unit nbval lint lab bench reproduce-golden verify-golden clean setup-gpu lmms-check

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
# requirements.lock with torch and torchvision as CUDA 12.8 builds from the PyTorch index (tests/meta/test_gpu_lock.py
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
# torch_threads param, the unit tier through OMP_NUM_THREADS).  The unit tier runs at the lowest priority, so
# that notebook 03's two SFT workers (they meet at every step) are not held back by a third busy thread.  Measured
# on a Zen 4 from clean clones: that cell 600 s -> 565 s, `make test` 17 min 13 s -> 16 min 51 s (the SFT alone
# takes 304 s in a quiet `make reproduce`).  Little more can come from priority: measured on these VMs a nice-19
# process still gets half the CPU of a nice-0 one, and with the kernel's autogroup scheduling every Jupyter kernel
# (started in its own session) is its own group, which the niced tier does not yield to.  Priority changes only
# the order, never a result.
UNIT_NICE ?=
test: setup
	$(MAKE) --no-print-directory -j2 unit nbval UNIT_NICE="nice -n 19"

# The tests live in tests/<layer>/ (tests/README.md lists the layers and which target runs what).
# The fast tier for daily work: pure functions and fakes, no model built, no pipeline run (< 2 min).
test-fast: setup
	$(BIN)/pytest -q -m "not slow and not model and not learning" tests

unit: setup
	OMP_NUM_THREADS=1 $(UNIT_NICE) $(BIN)/pytest -q --durations=15 -m "not learning" tests

# Notebooks in order (01 -> 08) at their tiny defaults, written into a fresh folder (AVERE_RUN_DIR), never
# into outputs/tiny: a pass can not lean on a stale `make reproduce`.  Then tests/learning/test_learning.py reads
# what they recorded (learning thresholds live there, not in notebook cells).
nbval: setup
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
		AVERE_RUN_DIR=$$tmp/tiny $(BIN)/pytest -q --durations=15 --nbval-lax -p no:cacheprovider \
			notebooks/ tests/learning/test_learning.py

lint: setup
	$(BIN)/ruff check avere_utils tests bench notebooks

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

# The committed golden run, outputs/golden, in one command: the tiny run, two more training seeds, two more
# references (each with the variants the bars compare), the report over all of them, the weights' checksums
# (per seed folder too), then avere_utils/publish.py copies what a reader needs into outputs/golden
# without the machine's absolute paths (notebooks included).  verify-golden runs the same recipe into
# outputs/verify and compares every metrics folder (seeds included) within tolerance, checksums exactly.
REFERENCE_SEEDS ?= 1 2
REFERENCE_SEED_VARIANTS ?= reference avem_dpo naive_dpo no_pmp no_tpd
define golden_recipe
	$(BIN)/avere-kit run --profile tiny --out $(1)
	$(BIN)/avere-kit seeds --profile tiny --seeds $(REFERENCE_SEEDS) --out $(1)
	$(BIN)/avere-kit reference-seeds --profile tiny --seeds $(REFERENCE_SEEDS) --variants $(REFERENCE_SEED_VARIANTS) --out $(1)
	$(BIN)/avere-kit run --profile tiny --only 08_results_and_ablations --out $(1)
	for d in $(1) $(1)/seeds/seed-* $(1)/reference_seeds/seed-*; do \
		if [ -d "$$d/models" ]; then $(BIN)/python -m avere_utils.checksums write "$$d"; fi; done
endef

reproduce-golden: setup
	$(call golden_recipe,outputs/tiny)
	$(BIN)/python -m avere_utils.publish outputs/tiny outputs/golden
	du -sh outputs/golden

verify-golden: setup
	$(call golden_recipe,outputs/verify)
	$(BIN)/python -m avere_utils.verify --skip-run --out outputs/verify --golden outputs/golden

clean:
	rm -rf outputs/tiny outputs/verify outputs/bench .jupyter_runtime

# lmms-eval users' route to the benchmarks (docs/evaluation.md, "lmms-eval"), checked end to end; never part of
# `make test`: lmms-eval lives in its own venv, since it needs av<16 and filelock<4 (lmms-eval 0.7.3 imports
# filelock._api) where the kit pins av 18.1.0 and filelock 4, and a newer ruff and an older protobuf; every other
# pin is requirements.lock's.  PyPI's torchvision wheels are CUDA builds: next to the CPU torch they do not load
# (`operator torchvision::nms does not exist`), and a torchvision that is installed but broken breaks
# transformers' imports, so it is removed there (neither the kit nor these tasks use it).  The check reads the
# tiny run (LMMS_RUN: its reference and LMMS_VARIANT's adapter, notebooks 05 / 07's metrics); without one it
# builds a micro run (random weights) under outputs/lmms-check.  Report: outputs/lmms-check/report.json.
LMMS_VENV ?= build/lmms-venv
LMMS_BIN := $(LMMS_VENV)/bin
LMMS_STAMP := $(LMMS_VENV)/.installed
LMMS_RUN ?= outputs/tiny
LMMS_VARIANT ?= avem_dpo
$(LMMS_STAMP): requirements.lock pyproject.toml
	test -x $(LMMS_BIN)/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_BIN)/pip install -q --no-compile torch==2.13.0
	grep -v -E '^(torch|av|ruff|protobuf|filelock)==' requirements.lock > $(LMMS_VENV)/constraints.txt
	echo 'filelock<4' >> $(LMMS_VENV)/constraints.txt
	$(LMMS_BIN)/pip install -q --no-compile -c $(LMMS_VENV)/constraints.txt torch==2.13.0 -e '.[lmms]'
	$(LMMS_BIN)/python -c 'import torchvision' 2>/dev/null || { echo "torchvision does not load next to this torch: removed"; \
		$(LMMS_BIN)/pip uninstall -q -y torchvision; }
	touch $(LMMS_STAMP)

lmms-check: $(LMMS_STAMP)
	OMP_NUM_THREADS=1 $(LMMS_BIN)/python bench/lmms_check.py --profile $(PROFILE) --run $(LMMS_RUN) \
		--variant $(LMMS_VARIANT) --out outputs/lmms-check
