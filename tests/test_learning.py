"""What the tiny models learned, read back from the values the notebooks recorded on the full-size run.

`make nbval` executes every notebook at its tiny defaults into a fresh `$AVERE_RUN_DIR` and then runs this
module (recommenders-style: the notebooks record, the tests judge with tolerances).  The run is bounded by
steps, so on the same CPU type these values are the same on a quiet or a busy machine.  Outside that target
there is no run to read and the module is skipped, saying so."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from avere_utils.config import RUN_DIR_ENV

pytestmark = pytest.mark.learning

RUN = Path(os.environ[RUN_DIR_ENV]) if os.environ.get(RUN_DIR_ENV) else None
if RUN is None:
    pytest.skip(f"no full-size run to read: ${RUN_DIR_ENV} is set by `make nbval`", allow_module_level=True)


def log(name: str) -> list[dict]:
    path = RUN / "train_logs" / f"{name}.jsonl"
    assert path.is_file(), f"{path}: the notebook did not record its training log"
    return [r for r in map(json.loads, path.read_text().splitlines()) if "step" in r and "loss" in r]


def mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def test_sft_halves_the_loss():
    steps = log("reference")
    first, last = mean(r["loss"] for r in steps[:10]), mean(r["loss"] for r in steps[-30:])
    assert last < 0.5 * first, (first, last)


def test_the_reference_recognises_emotions_on_held_out_clips():
    summary = json.loads((RUN / "metrics" / "reference_heldout.json").read_text())
    assert summary["accuracy"] > summary["chance"] + 0.1, summary


def test_dpo_lowers_its_loss_and_ends_with_a_positive_margin():
    steps = log("avem_dpo")  # notebook 04's default variant
    quarter = max(1, len(steps) // 4)
    assert mean(r["loss"] for r in steps[-quarter:]) < steps[0]["loss"]
    assert mean(r["margins/response"] for r in steps[-quarter:]) > 0
