"""The whole tiny run through papermill at the smallest sizes: every stage, every variant, every metrics
file with its required keys, and a report that names every variant.  Learning-quality asserts inside the
notebooks are switched off (`assert_learning=False`): at these sizes nothing can be learned; the nbval run
of the notebooks at their tiny defaults checks learning."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from avere_utils import config, runner, sweep

SMALLEST = {
    # 01: a world of ~250 clips instead of ~1,100
    "n_train_source": 84, "n_dfew_test_per_class": 2, "n_dfew_train_per_class": 1, "n_ravdess_actors": 1,
    "n_mer2023": 10, "n_mer2023_worried": 1, "n_emer": 7, "n_emorealm_per_task": 4,
    # 03: six SFT steps (a step bound, never a time cap); 04: one optimizer step per variant
    "sft_epochs": 1, "sft_max_steps": 6, "n_check": 14, "n_show": 2,
    "max_samples": 8, "assert_learning": False,
}
CLASSIFICATION_KEYS = {"uar", "war", "weighted_f1", "n_items", "n_scored", "coverage", "scoring_mode", "model", "modes"}
EMOREALM_KEYS = {"reasoning_basic_audio", "reasoning_basic_video", "modality_agreement", "reasoning_stress_audio",
                 "reasoning_stress_video", "average_accuracy", "n_items", "n_scored", "coverage"}
EMER_KEYS = {"clue", "label", "spurious", "hallucination", "n_items", "n_scored", "coverage", "judge"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke") / "run"
    return out, runner.run("tiny", out=str(out), overrides=SMALLEST, echo=lambda s: None)


@pytest.mark.slow
def test_whole_tiny_run_at_smallest_sizes(small_run):
    out, result = small_run
    run = config.load_run("tiny")
    once = [s for s in run.stages if s not in run.per_train_variant + run.per_eval_variant]
    n_expected = len(once) + len(run.train_variants) * len(run.per_train_variant) + len(run.eval_variants) * len(run.per_eval_variant)
    assert len(result.times) == n_expected

    metrics = out / "metrics"
    for variant in run.eval_variants:
        for bench in ("dfew", "ravdess", "mer2023"):
            m = json.loads((metrics / f"{bench}-{variant}.json").read_text())
            assert CLASSIFICATION_KEYS <= set(m), (bench, variant, CLASSIFICATION_KEYS - set(m))
            assert set(m["modes"]) == {"paper", "strict", "scoring"}
        m = json.loads((metrics / f"emorealm-{variant}.json").read_text())
        assert EMOREALM_KEYS <= set(m), (variant, EMOREALM_KEYS - set(m))
        m = json.loads((metrics / f"emer-{variant}.json").read_text())
        assert EMER_KEYS <= set(m), (variant, EMER_KEYS - set(m))
        assert m["clue"] is None or 1.0 <= m["clue"] <= 10.0  # null: nothing judged (empty answers)

    report = (out / "report.md").read_text()
    for variant in run.eval_variants:
        assert f"| {variant} |" in report, variant
    assert "Wall times" in report
    assert "## The story, measured" in report  # the verdicts themselves are learned behaviour: not asserted
    for fig in ("story_yes_rates", "margins", "training_curves"):
        assert (out / "figures" / f"{fig}.png").is_file(), fig
    for variant in run.train_variants:
        assert (out / "figures" / f"margins-{variant}.png").is_file(), variant
    for variant in run.train_variants:
        assert (out / "models" / variant / "adapter_config.json").is_file()
    assert len(list((out / "notebooks").glob("*.ipynb"))) == n_expected


@pytest.mark.slow
def test_sweep_on_a_two_point_grid_reuses_the_base_run_and_skips_done_points(small_run):
    out, _ = small_run
    per_variant = {"max_samples": 8, "assert_learning": False}
    table = sweep.sweep("tiny", {"gamma_tpd": [0.0, 0.4]}, out=str(out), overrides=per_variant, echo=lambda s: None)
    assert list(table["gamma_tpd"]) == [0.0, 0.4]
    assert table[["DFEW UAR", "Avg", "Halluc"]].notna().all().all()
    for point, gamma in (("gamma_tpd-0.0", 0.0), ("gamma_tpd-0.4", 0.4)):
        point_dir = out / "sweep" / point
        assert (point_dir / "models" / "avem_dpo" / "adapter_config.json").is_file()
        assert (point_dir / "models" / "reference").is_symlink()  # shared, not retrained
        assert (point_dir / "metrics" / "emorealm-avem_dpo.json").is_file()
        summary = json.loads((point_dir / "models" / "avem_dpo" / "training_summary.json").read_text())
        assert summary["loss_config"]["gamma_tpd"] == gamma  # the grid value reached the trainer
    assert pd.read_csv(out / "sweep" / "summary.csv").shape[0] == 2
    assert (out / "sweep" / "summary.png").is_file()
    lines: list[str] = []
    sweep.sweep("tiny", {"gamma_tpd": [0.0, 0.4]}, out=str(out), overrides=per_variant, echo=lines.append)
    assert sum("done before, skipped" in line for line in lines) == 2
