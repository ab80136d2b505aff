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
    steps = [r for r in log("reference") if r.get("phase", "sft") == "sft"]  # the main SFT, not the presence phase
    first, last = mean(r["loss"] for r in steps[:10]), mean(r["loss"] for r in steps[-30:])
    assert last < 0.5 * first, (first, last)


def test_the_reference_recognises_emotions_on_held_out_clips():
    summary = json.loads((RUN / "metrics" / "reference_heldout.json").read_text())
    assert summary["accuracy"] > summary["chance"] + 0.1, summary


def test_the_presence_phase_teaches_the_yes_no_probe():
    """The reference perceives which typical cues a clip shows (notebook 03's probe, 140 held-out clips).
    Measured on the committed golden run: 0.995 visual, 0.94 audio; before the presence phase both were
    0.5 ("always Yes").  The floor is issue 11's bar, 0.85; the margin above it leaves room for another CPU
    type's last-bit differences."""
    probe = json.loads((RUN / "metrics" / "presence_probe-reference.json").read_text())["yes_no"]
    assert probe["visual"]["balanced_accuracy"] >= 0.85, probe
    assert probe["audio"]["balanced_accuracy"] >= 0.85, probe
    phases = {r.get("phase") for r in log("reference")}
    assert phases == {"sft", "presence"}, phases


def test_dpo_lowers_its_loss_and_ends_with_a_positive_margin():
    """The last quarter of steps against the first: a step's loss is mostly its batch's TPD offset (0.5-1.9
    on the tiny pairs), so one batch, step 1 alone, is no baseline (committed run: step 1 1.77, first quarter
    2.60, last quarter 1.79)."""
    steps = log("avem_dpo")  # notebook 04's default variant
    quarter = max(1, len(steps) // 4)
    assert mean(r["loss"] for r in steps[-quarter:]) < mean(r["loss"] for r in steps[:quarter])
    # and the policy's own margin (beta * rho-margin, before TPD) grows over training (committed run: 0.05 -> 0.79)
    assert mean(r["margins/response"] for r in steps[-quarter:]) > mean(r["margins/response"] for r in steps[:quarter])
    assert mean(r["margins/response"] for r in steps[-quarter:]) > 0
