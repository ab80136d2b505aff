"""Session fixtures shared by the end-to-end tests.

Stages 01-03 of the tiny profile at the smallest sizes (a ~250-clip world, six SFT steps) are built once
per test session; the smoke test, the sweep test and the fault tests each work on their own copy."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from avere_utils import runner

BASE_STAGES = ("01_data_preparation", "02_pair_construction", "03_reference_model")
# 01: a world of ~250 clips instead of ~1,100; 03: six SFT steps and six presence-phase steps (step bounds,
# never a time cap)
BASE_SIZES = {
    "n_train_source": 84, "n_dfew_test_per_class": 2, "n_dfew_train_per_class": 1, "n_ravdess_actors": 1,
    "n_mer2023": 10, "n_mer2023_worried": 1, "n_emer": 7, "n_emorealm_per_task": 4,
    "sft_epochs": 1, "sft_max_steps": 6, "sft_presence_phase_steps": 6, "n_check": 14, "n_show": 2,
}
# 04: one optimizer step per variant (nothing can be learned at these sizes: tests/test_learning.py reads
# the full-size nbval run instead)
LATER_SIZES = {"max_samples": 8}


def clone_run(base: Path, dst: Path) -> Path:
    """A private copy of a run folder (symlinks kept, so shared caches stay shared)."""
    shutil.copytree(base, dst, symlinks=True)
    return dst


@pytest.fixture(scope="session")
def tiny_base_run(tmp_path_factory) -> Path:
    """A run folder holding stages 01-03 at the smallest sizes. Read it, or clone it before writing."""
    out = tmp_path_factory.mktemp("tiny-base") / "run"
    runner.run("tiny", only=list(BASE_STAGES), out=str(out), overrides=BASE_SIZES, echo=lambda s: None)
    return out
