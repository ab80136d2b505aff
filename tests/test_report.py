"""Result tables built from fixture metrics: shapes, modes, gains, ablation, the report file, sweep grid."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from avere_utils import sweep
from avere_utils.config import build
from avere_utils.report.build import build_report
from avere_utils.report.params import ResultsParams
from avere_utils.report.tables import (ablation_table, load_metrics, markdown_table, paper_reported,
                                       relative_gain, table2, table3)

TASKS = ["reasoning_basic_audio", "reasoning_basic_video", "modality_agreement", "reasoning_stress_audio",
         "reasoning_stress_video"]


def _write(metrics_dir, bench, variant, payload):
    metrics_dir.mkdir(parents=True, exist_ok=True)
    (metrics_dir / f"{bench}-{variant}.json").write_text(json.dumps(payload))


def _classification(uar, war, f1, strict_shift=0.0):
    block = {"uar": uar, "war": war, "weighted_f1": f1}
    return {**block, "n_items": 10, "coverage": 1.0, "scoring_mode": "strict",
            "modes": {"paper": {k: v + 5 for k, v in block.items()},
                      "strict": {k: v + strict_shift for k, v in block.items()},
                      "scoring": {k: v - 5 for k, v in block.items()}}}


@pytest.fixture
def run_dir(tmp_path):
    m = tmp_path / "run" / "metrics"
    for variant, base in (("reference", 50.0), ("avem_dpo", 60.0), ("no_pmp", 55.0)):
        for bench in ("dfew", "ravdess", "mer2023"):
            _write(m, bench, variant, _classification(base, base + 1, base + 2))
        tasks = {t: base + i for i, t in enumerate(TASKS)}
        _write(m, "emorealm", variant, {**tasks, "average_accuracy": sum(tasks.values()) / 5,
                                        "hallucination_rate": 1 - base / 100,
                                        "modes": {"strict": {**tasks, "average_accuracy": sum(tasks.values()) / 5}}})
        _write(m, "emer", variant, {"clue": base / 10, "label": 6.0, "spurious": 5.0, "hallucination": 4.0,
                                    "spurious_rate": 0.2})
    logs = tmp_path / "run" / "train_logs"
    logs.mkdir()
    (logs / "avem_dpo.jsonl").write_text("\n".join(json.dumps({"step": s, "loss": 0.7 - s / 10, "loss_y": 0.6,
                                                               "margin_y": s / 10}) for s in range(5)))
    return tmp_path / "run"


def test_table_shapes_and_modes(run_dir):
    metrics = load_metrics(run_dir / "metrics")
    t2 = table2(metrics, ["reference", "avem_dpo"], "strict")
    assert list(t2.columns) == ["DFEW UAR", "DFEW WAR", "RAV UAR", "RAV WAR", "MER23 F1", "Clue", "Label",
                                "Spurious", "Halluc"]
    assert t2.loc["avem_dpo", "DFEW UAR"] == 60.0 and t2.loc["reference", "MER23 F1"] == 52.0
    assert table2(metrics, ["reference"], "paper").loc["reference", "DFEW UAR"] == 55.0
    assert t2.loc["avem_dpo", "Clue"] == 6.0  # EMER has no modes: the same value in every mode
    t3 = table3(metrics, ["reference", "avem_dpo"], "strict")
    assert t3.loc["reference", "Avg"] == pytest.approx(52.0)
    assert pd.isna(table2(metrics, ["naive_dpo"]).loc["naive_dpo", "DFEW UAR"])  # absent = NaN, not 0


def test_relative_gain_and_ablation(run_dir):
    metrics = load_metrics(run_dir / "metrics")
    t2 = table2(metrics, ["reference", "avem_dpo"], "strict")
    gain = relative_gain(t2)
    assert gain.loc["avem_dpo", "DFEW UAR"] == pytest.approx(20.0)
    assert gain.loc["reference"].fillna(0).eq(0).all()
    with pytest.raises(KeyError):
        relative_gain(t2, "naive_dpo")
    abl = ablation_table(metrics, "strict")
    assert abl.loc["AVEm-DPO (full)", "Avg"] == pytest.approx(62.0)
    assert abl.loc["- PMP", "Avg"] == pytest.approx(57.0)
    assert abl.loc["- ERP"].isna().all()


def test_paper_numbers_are_data_not_mixed(run_dir):
    t3 = paper_reported("table3")
    assert t3.loc["+ AVEm-DPO", "average_accuracy"] == 83.3
    assert paper_reported("table2").loc["Our base", "dfew_uar"] == 56.78


def test_report_names_every_variant_and_separates_paper_numbers(run_dir):
    P = build(ResultsParams, {"run_dir": str(run_dir)}, "test")
    rep = build_report(P)
    text = (run_dir / "report.md").read_text()
    for v in ("reference", "avem_dpo", "no_pmp"):
        assert f"| {v} |" in text
    assert rep.missing == ["naive_dpo", "vista_dpo", "no_erp", "no_tpd"]
    mine, paper = text.split("## Reported by the paper")
    assert "83.30" not in mine and "83.30" in paper
    assert (run_dir / "figures" / "training_curves.png").is_file()
    assert "emorealm:hallucination_rate" in rep.tables["error_rates"].columns


def test_seed_summary_pools_base_run_and_seed_reruns(run_dir):
    seed_metrics = run_dir / "seeds" / "seed-1" / "metrics"
    for bench in ("dfew", "ravdess", "mer2023"):
        _write(seed_metrics, bench, "avem_dpo", _classification(70.0, 71.0, 72.0))
    P = build(ResultsParams, {"run_dir": str(run_dir)}, "test")
    seeds = build_report(P).tables["seeds"]
    assert seeds.loc["avem_dpo", "DFEW UAR"] == "65.00 ± 7.07 (n=2)"  # mean of 60 and 70, sample std
    assert seeds.loc["reference", "DFEW UAR"] == "50.00 (n=1)"  # not retrained per seed


def test_markdown_table_formats_missing_as_dash():
    text = markdown_table(pd.DataFrame({"a": [1.0, None]}, index=["x", "y"]), index=True)
    assert "| x | 1.00 |" in text and "| y | - |" in text


def test_sweep_grid_parsing_and_point_names():
    grid = sweep.parse_grid(["gamma_tpd=0,0.1", "lambda_av=0,1"])
    assert grid == {"gamma_tpd": [0, 0.1], "lambda_av": [0, 1]}
    points = sweep.grid_points(grid)
    assert len(points) == 4 and points[1] == {"gamma_tpd": 0, "lambda_av": 1}
    assert sweep.point_name(points[3]) == "gamma_tpd-0.1_lambda_av-1"
