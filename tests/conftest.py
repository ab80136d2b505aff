"""Session fixtures shared by the end-to-end tests.

Stages 01-03 of the tiny profile at the smallest sizes (a ~250-clip world, six SFT steps) are built once
per test session; the smoke test, the sweep test and the fault tests each work on their own copy.

The base run and the smoke run start from a scratch working directory holding only the run folder and a copy
of the notebooks (the kernels' working directory): a stage that writes anywhere but its run folder or a
folder its params name leaves something there, and tests/runner/test_pipeline_smoke.py lists it (`stray_entries`)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

from avere_utils import config, runner

BASE_STAGES = ("01_data_preparation", "02_pair_construction", "03_reference_model")
# 01: a world of ~250 clips instead of ~1,100; 03: six SFT steps and six presence-phase steps (step bounds,
# never a time cap)
BASE_SIZES = {
    "n_train_source": 84, "n_dfew_test_per_class": 2, "n_dfew_train_per_class": 1, "n_ravdess_actors": 1,
    "n_mer2023": 10, "n_mer2023_worried": 1, "n_emer": 7, "n_emorealm_per_task": 4,
    "sft_epochs": 1, "sft_max_steps": 6, "sft_presence_phase_steps": 6, "n_check": 14, "n_show": 2,
}
# 04: one optimizer step per variant (nothing can be learned at these sizes: tests/learning/test_learning.py reads
# the full-size nbval run instead)
LATER_SIZES = {"max_samples": 8}


def clone_run(base: Path, dst: Path) -> Path:
    """A private copy of a run folder (symlinks kept, so shared caches stay shared)."""
    shutil.copytree(base, dst, symlinks=True)
    return dst


SCRATCH_NOTEBOOKS = sorted(f"{stage}.ipynb" for stage in config.STAGES)


def run_from_scratch(scratch: Path, only: Sequence[str], overrides: Mapping[str, Any]) -> runner.RunResult:
    """`runner.run` into `scratch`/run with the process standing in `scratch` and the kernels in
    `scratch`/notebooks (a copy of the notebooks), so that a relative write by either stays visible."""
    notebooks = scratch / "notebooks"
    notebooks.mkdir()
    for name in SCRATCH_NOTEBOOKS:
        shutil.copy2(runner.NOTEBOOKS_DIR / name, notebooks / name)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(scratch)
        return runner.run("tiny", only=list(only), out=str(scratch / "run"), overrides=dict(overrides),
                          notebooks_dir=notebooks, echo=lambda s: None)


def stray_entries(scratch: Path) -> list[str]:
    """What a run left in its scratch working directory besides its run folder and the notebooks it read."""
    found = [p.name for p in scratch.iterdir() if p.name not in ("run", "notebooks")]
    return sorted(found + [f"notebooks/{p.name}" for p in (scratch / "notebooks").iterdir()
                           if p.name not in SCRATCH_NOTEBOOKS])


@pytest.fixture(scope="session")
def tiny_base_run(tmp_path_factory) -> Path:
    """A run folder holding stages 01-03 at the smallest sizes. Read it, or clone it before writing.
    Its parent is the scratch working directory the run started from."""
    scratch = tmp_path_factory.mktemp("tiny-base")
    run_from_scratch(scratch, BASE_STAGES, BASE_SIZES)
    return scratch / "run"


def backend_with_lora(model_dir):
    """A tiny/micro checkpoint loaded with LoRA r 4 whose B matrices are non-zero (drawn from seed 0), as
    after a few training steps: the adapters then change the log-probs and every LoRA matrix gets a gradient."""
    import torch

    from avere_utils.models import LoraSettings, load_backend

    torch.manual_seed(0)
    backend = load_backend(str(model_dir), lora=LoraSettings(r=4, alpha=16), device="cpu")
    with torch.no_grad():
        for name, p in backend.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    return backend
