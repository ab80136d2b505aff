"""The whole tiny run through papermill at the smallest sizes: every stage, every variant, every metrics
file with its required keys, and a report that names every variant.  Structure only: at these sizes nothing
can be learned; tests/learning/test_learning.py checks learning on the values the full-size nbval run recorded."""
from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import BASE_STAGES, LATER_SIZES, clone_run, run_from_scratch, stray_entries

from avere_utils import config, sweep

CLASSIFICATION_KEYS = {"uar", "war", "weighted_f1", "n_items", "n_scored", "coverage", "scoring_mode", "model", "modes"}
EMOREALM_KEYS = {"reasoning_basic_audio", "reasoning_basic_video", "modality_agreement", "reasoning_stress_audio",
                 "reasoning_stress_video", "average_accuracy", "n_items", "n_scored", "coverage"}
EMER_KEYS = {"clue", "label", "spurious", "hallucination", "n_items", "n_scored", "coverage", "judge"}


@pytest.fixture(scope="module")
def small_run(tiny_base_run, tmp_path_factory):
    """The whole run: stages 01-03 from the session's base run (conftest), then every later stage here,
    started from a scratch working directory (the run folder's parent)."""
    out = clone_run(tiny_base_run, tmp_path_factory.mktemp("smoke") / "run")
    later = [s for s in config.load_run("tiny").stages if s not in BASE_STAGES]
    result = run_from_scratch(out.parent, later, LATER_SIZES)
    return out, result


@pytest.mark.slow
def test_whole_tiny_run_at_smallest_sizes(small_run):
    out, result = small_run
    run = config.load_run("tiny")
    once = [s for s in run.stages if s not in run.per_train_variant + run.per_eval_variant]
    n_expected = (len(once) + len(run.train_variants) * len(run.per_train_variant)
                  + len(run.eval_variants) * len(run.per_eval_variant))
    times = json.loads((out / "run_times.json").read_text())  # the base stages' times are kept beside the rest
    assert len(times) == n_expected and len(result.times) == n_expected - len(BASE_STAGES)

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


def test_stray_entries_names_what_was_left_beside_the_run_folder(tmp_path):
    for d in ("run/models", "notebooks", "--start"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "notebooks" / "01_data_preparation.ipynb").write_text("{}")
    (tmp_path / "notebooks" / "summary.csv").write_text("")
    assert stray_entries(tmp_path) == ["--start", "notebooks/summary.csv"]


@pytest.mark.slow
def test_every_stage_writes_only_into_its_run_folder(tiny_base_run, small_run):
    # stages 01-03 ran from the base run's scratch directory, 04-08 from the smoke run's (conftest)
    assert stray_entries(tiny_base_run.parent) == []
    assert stray_entries(small_run[0].parent) == []


@pytest.mark.slow
def test_sweep_on_a_two_point_grid_reuses_the_base_run_and_skips_done_points(small_run):
    out, _ = small_run
    per_variant = LATER_SIZES
    table = sweep.sweep("tiny", {"gamma_tpd": [0.0, 0.4]}, out=str(out), overrides=per_variant, echo=lambda s: None)
    assert list(table["row"]) == ["gamma_tpd-0.0", "gamma_tpd-0.4", "reference (base run)", "avem_dpo (base run)"]
    assert list(table["gamma_tpd"][:2]) == [0.0, 0.4]
    assert table[["DFEW UAR", "Avg"]].notna().all().all()
    assert "Halluc" in table.columns  # null when nothing was judged (a smoke-sized model may answer nothing)
    for point, gamma in (("gamma_tpd-0.0", 0.0), ("gamma_tpd-0.4", 0.4)):
        point_dir = out / "sweep" / point
        assert (point_dir / "models" / "avem_dpo" / "adapter_config.json").is_file()
        assert (point_dir / "models" / "reference").is_symlink()  # shared, not retrained
        assert (point_dir / "metrics" / "emorealm-avem_dpo.json").is_file()
        summary = json.loads((point_dir / "models" / "avem_dpo" / "training_summary.json").read_text())
        assert summary["loss_config"]["gamma_tpd"] == gamma  # the grid value reached the trainer
    assert pd.read_csv(out / "sweep" / "summary.csv").shape[0] == 4  # the two points, the base run's two rows
    assert (out / "sweep" / "summary.png").is_file()
    lines: list[str] = []
    sweep.sweep("tiny", {"gamma_tpd": [0.0, 0.4]}, out=str(out), overrides=per_variant, echo=lines.append)
    assert sum("done before, skipped" in line for line in lines) == 2
