"""Result tables built from fixture metrics: shapes, modes, gains, ablation, the report file, sweep grid."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from avere_utils import config, sweep
from avere_utils.config import build
from avere_utils.report.build import build_report
from avere_utils.report.params import ResultsParams
from avere_utils.report.tables import (
    ablation_table,
    load_metrics,
    markdown_table,
    paper_reported,
    relative_gain,
    table2,
    table3,
)

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
                                                               "margins/response": s / 10}) for s in range(5)))
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
    assert rep.missing == ["avem_dpo_policy", "avem_dpo_reversed", "naive_dpo", "vista_dpo", "no_erp", "no_tpd"]
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
    grid = config.parse_grid(["gamma_tpd=0,0.1", "lambda_av=0,1"])
    assert grid == {"gamma_tpd": [0, 0.1], "lambda_av": [0, 1]}
    points = sweep.grid_points(grid)
    assert len(points) == 4 and points[1] == {"gamma_tpd": 0, "lambda_av": 1}
    assert sweep.point_name(points[3]) == "gamma_tpd-0.1_lambda_av-1"


# --- the story (issue 11 item 4): table, checks, ablation costs, figures -----------------------------
from avere_utils.report import story  # noqa: E402


def _emorealm_with_kinds(yes: dict, avg: float, stress: tuple[float, float] = (60.0, 60.0)) -> dict:
    block = {"reasoning_stress_audio": stress[0], "reasoning_stress_video": stress[1], "average_accuracy": avg,
             "by_kind": {k: {"n_items": 60, "yes_rate": v} for k, v in yes.items()}}
    return {**block, "modes": {"scoring": block, "strict": {**block, "average_accuracy": avg - 10}}}


def _story_run(metrics_dir, variant, yes, avg, stress=(60.0, 60.0), emer=(8.0, 6.0), uar=(60.0, 60.0)):
    _write(metrics_dir, "emorealm", variant, _emorealm_with_kinds(yes, avg, stress))
    # the held-out wordings: read in scoring mode only, Yes-rates a little closer to the reference's
    held = {k: {"n_items": 60, "yes_rate": v + 2} for k, v in yes.items()}
    _write(metrics_dir, "emorealm_heldout", variant, {"by_kind": held, "modes": {"scoring": {"by_kind": held}}})
    # the cue judge's rates behind the scores (score = 1 + 9 * (1 - rate))
    rates = {"spurious_rate": 100 * (10 - emer[0]) / 9, "hallucination_rate": 100 * (10 - emer[1]) / 9}
    _write(metrics_dir, "emer", variant, {"spurious": emer[0], "hallucination": emer[1], "cue_rates": rates})
    _write(metrics_dir, "dfew", variant, {"uar": uar[0], "modes": {"scoring": {"uar": uar[0]}}})
    _write(metrics_dir, "ravdess", variant, {"uar": uar[1], "modes": {"scoring": {"uar": uar[1]}}})


@pytest.fixture
def story_run(tmp_path):
    """A run where every bullet holds: the reference says Yes to everything, AVEm-DPO discriminates."""
    run = tmp_path / "run"
    _story_run(run / "metrics", "reference", {"relevant": 85, "spurious": 70, "hallucination": 65}, 50.0,
               stress=(50, 50), emer=(7.0, 5.0))
    for i, seed_dir in enumerate([run / "metrics", run / "seeds" / "seed-1" / "metrics",
                                  run / "seeds" / "seed-2" / "metrics"]):
        d = i - 1  # -1, 0, +1: sample sd 1 over the three runs
        _story_run(seed_dir, "avem_dpo", {"relevant": 80 + d, "spurious": 30 + d, "hallucination": 25 + d},
                   70.0 + d, stress=(65, 66), emer=(8.0, 7.0), uar=(59.0, 61.0))
        _story_run(seed_dir, "naive_dpo", {"relevant": 60, "spurious": 50, "hallucination": 60}, 60.0 + d)
        for v, yes in (("no_pmp", {"relevant": 80, "spurious": 32, "hallucination": 45}),
                       ("no_erp", {"relevant": 80, "spurious": 50, "hallucination": 26}),
                       ("no_tpd", {"relevant": 70, "spurious": 31, "hallucination": 26})):
            _story_run(seed_dir, v, yes, 65.0 + d)
    return run


VARIANTS = ["reference", "avem_dpo", "naive_dpo", "no_pmp", "no_erp", "no_tpd"]


def test_story_table_pools_base_and_seed_runs(story_run):
    values, table = story.load_story(story_run, story_run / "seeds", VARIANTS, "scoring")
    assert set(values["run"]) == {"base", "seed-1", "seed-2"}
    avg = story.stat(table, "avem_dpo", "Avg")
    assert (avg.mean, avg.sd, avg.n) == (pytest.approx(70.0), pytest.approx(1.0), 3)
    ref = story.stat(table, "reference", "Yes spurious")
    assert ref.n == 1 and ref.mean == 70.0 and pd.isna(ref.sd)  # the reference is not retrained per seed
    # the mode matters: strict's average is 10 points lower in the fixture
    _, strict = story.load_story(story_run, story_run / "seeds", VARIANTS, "strict")
    assert story.stat(strict, "avem_dpo", "Avg").mean == pytest.approx(60.0)


def test_pooled_sd_weights_by_degrees_of_freedom():
    a, b = story.Stat(0.0, 1.0, 3), story.Stat(0.0, 3.0, 3)
    assert story.pooled_sd(a, b) == pytest.approx((5.0) ** 0.5)  # (2*1 + 2*9) / 4
    assert story.pooled_sd(story.Stat(0, 2.0, 5), story.Stat(0, float("nan"), 1)) == pytest.approx(2.0)
    assert pd.isna(story.pooled_sd(story.Stat(0, float("nan"), 1), story.Stat(0, float("nan"), 1)))


def test_every_bullet_holds_on_a_run_built_to_satisfy_them(story_run):
    _, table = story.load_story(story_run, story_run / "seeds", VARIANTS, "scoring")
    checks = [c for group in story.story_checks(table).values() for c in group]
    assert len(checks) == 3 + 7 + 1 + 3 + 2
    assert all(c.holds for c in checks), [c.claim for c in checks if not c.holds]


def test_each_bullet_fails_when_its_number_misses_the_bar(story_run):
    _, table = story.load_story(story_run, story_run / "seeds", VARIANTS, "scoring")

    def with_value(variant, quantity, mean=None, sd=None):
        t = table.copy()
        row = (t["variant"] == variant) & (t["quantity"] == quantity)
        if mean is not None:
            t.loc[row, "mean"] = mean
        if sd is not None:
            t.loc[row, "sd"] = sd
        return t

    assert not story.check_reference_errors(with_value("reference", "Yes spurious", 39.0))[0].holds
    # saying No to everything is not a fix: the relevant Yes-rate may drop by at most 10 points
    fix = story.check_fix(with_value("avem_dpo", "Yes relevant", 74.0))
    assert [c.holds for c in fix[:3]] == [True, True, False]
    assert not story.check_fix(with_value("avem_dpo", "Yes halluc", 51.0))[1].holds  # a 14-point drop
    # gap 10 over pooled sd 1 holds; with naive's sd 8 (pooled sqrt((2 + 128) / 4) = 5.7) it is under 2 sd
    assert story.check_naive_gap(table).holds
    assert not story.check_naive_gap(with_value("naive_dpo", "Avg", sd=8.0)).holds
    assert not story.check_ablations(with_value("no_tpd", "Avg", 71.0))[2].holds
    assert not story.check_recognition(with_value("avem_dpo", "DFEW UAR", 57.9))[0].holds


def test_undecidable_bullets_say_so_instead_of_passing(story_run):
    _, table = story.load_story(story_run, None, VARIANTS, "scoring")  # no seeds: one run each
    gap = story.check_naive_gap(table)
    assert gap.holds is None and "two or more seeds" in gap.measured
    no_naive = story.check_naive_gap(table[table["variant"] != "naive_dpo"])
    assert no_naive.holds is None and no_naive.verdict == "undecided"


def test_ablation_costs_name_the_stress_kind_each_loses_most(story_run):
    _, table = story.load_story(story_run, story_run / "seeds", VARIANTS, "scoring")
    costs = story.ablation_costs(table)
    assert costs.loc["- PMP", "costs most"] == "hallucination"  # 45 vs 25 Yes on hallucinated cues
    assert costs.loc["- ERP", "costs most"] == "spurious"  # 50 vs 30
    assert costs.loc["- TPD", "costs most"] == "relevant"  # wrongly No: 30 vs 20
    assert costs.loc["- PMP", "+err hallucination"] == pytest.approx(20.0)


def test_report_states_the_story_with_spread_and_verdicts(story_run):
    P = build(ResultsParams, {"run_dir": str(story_run), "variants": VARIANTS}, "test")
    rep = build_report(P)
    text = (story_run / "report.md").read_text()
    assert "## The story, measured (mode `scoring`" in text
    assert "| avem_dpo | 3 | 80.0 ± 1.0 |" in text
    assert "**holds**" in text and "costs most" in text
    assert set(rep.tables["story_checks"]["verdict"]) == {"holds"}
    assert rep.figures["story_yes_rates"] == story_run / "figures" / "story_yes_rates.png"
    assert rep.figures["story_yes_rates"].is_file()


def test_margin_figures_from_training_logs(tmp_path):
    from avere_utils.report.figures import margin_curves, read_train_logs
    from avere_utils.training.figures import margin_keys, plot_margins

    logs = tmp_path / "train_logs"
    logs.mkdir()
    two = [{"step": s, "margins/vr": s / 10, "margins/er": 0.0, "margins/pmp": s / 20,
            "accuracies/vr": 1.0, "accuracies/er": 0.5, "accuracies/pmp": 0.7} for s in range(1, 6)]
    one = [{"step": s, "margins/rejected": s / 10, "margins/pmp": None} for s in range(1, 6)]
    (logs / "avem_dpo.jsonl").write_text("\n".join(json.dumps(r) for r in two))
    (logs / "naive_dpo.jsonl").write_text("\n".join(json.dumps(r) for r in one))
    assert margin_keys(pd.DataFrame(two)) == ["margins/vr", "margins/er", "margins/pmp"]
    assert margin_keys(pd.DataFrame(one)) == ["margins/rejected"]
    assert plot_margins(logs / "naive_dpo.jsonl", tmp_path / "m.png").is_file()
    frame = read_train_logs(logs, ["avem_dpo", "naive_dpo"])
    assert margin_curves(frame, tmp_path / "all.png").is_file()


def test_sweep_summary_has_one_panel_per_metric_and_yes_rates(tmp_path):
    assert sweep.panel_layout(9) == (3, 4) and sweep.panel_layout(2) == (1, 2)
    m = tmp_path / "metrics"
    _write(m, "emorealm", "avem_dpo", _emorealm_with_kinds({"relevant": 80, "spurious": 30, "hallucination": 20}, 70))
    assert sweep.yes_rate_row(m, "avem_dpo", "scoring") == {"Yes relevant": 80, "Yes spurious": 30,
                                                            "Yes hallucination": 20}
    assert sweep.yes_rate_row(tmp_path / "none", "avem_dpo") == {f"Yes {k}": None for k in story.KINDS}


def test_emer_scores_carry_their_coverage_and_partial_ones_are_marked():
    from avere_utils.report.tables import PARTIAL_MARK, with_emer_coverage

    emer = {"reference": {"clue": 5.0, "label": 6.0, "spurious": 7.0, "hallucination": 4.0, "coverage": 100.0},
            "avem_dpo": {"clue": 6.0, "label": 6.5, "spurious": 8.0, "hallucination": 5.0, "coverage": 40.0},
            "naive_dpo": {"clue": None, "label": None, "spurious": None, "hallucination": None, "coverage": 0.0}}
    metrics = {("emer", v): m for v, m in emer.items()}
    shown = with_emer_coverage(table2(metrics, list(emer)), metrics)
    assert shown.loc["reference", "Clue"] == "5.00" and shown.loc["reference", "EMER cov %"] == "100"
    assert shown.loc["avem_dpo", "Halluc"] == "5.00" + PARTIAL_MARK and shown.loc["avem_dpo", "EMER cov %"] == "40"
    assert pd.isna(shown.loc["naive_dpo", "Clue"]) and shown.loc["naive_dpo", "EMER cov %"] == "0"  # null, never 1.0
    assert "-" in markdown_table(shown, index=True).splitlines()[-1]


def test_mcq_reading_section_shows_each_half_and_the_ignore_the_choices_baseline(run_dir):
    m = run_dir / "metrics"
    reading = {"n_items": 480, "pct_text_is_a_choice": 64.8, "pct_text_right": 59.8, "pct_letter_is_the_texts": 37.3,
               "n_letter_checked": 311, "pct_text_is_a_present_cue": 86.2, "pct_text_right_if_choices_ignored": 59.7,
               "n_with_cue_record": 480}
    ref = json.loads((m / "emorealm-reference.json").read_text())
    _write(m, "emorealm", "reference", {**ref, "mcq_reading": reading})
    rep = build_report(build(ResultsParams, {"run_dir": str(run_dir)}, "test"))
    text = (run_dir / "report.md").read_text()
    assert "## Does the model read the choices?" in text
    assert list(rep.tables["mcq_reading"].index) == ["reference"]  # variants without the key are left out
    assert rep.tables["mcq_reading"].loc["reference", "text right if the choices were ignored"] == 59.7
    assert "text is right in 59.8 % of the answers, against 59.7 %" in text


def test_mcq_reading_section_when_no_answer_wrote_a_choice_and_a_letter(run_dir):
    m = run_dir / "metrics"
    reading = {"n_items": 4, "pct_text_is_a_choice": 0.0, "pct_text_right": 0.0, "pct_letter_is_the_texts": None,
               "n_letter_checked": 0, "pct_text_is_a_present_cue": 0.0, "pct_text_right_if_choices_ignored": 50.0,
               "n_with_cue_record": 4}
    ref = json.loads((m / "emorealm-reference.json").read_text())
    _write(m, "emorealm", "reference", {**ref, "mcq_reading": reading})
    build_report(build(ResultsParams, {"run_dir": str(run_dir)}, "test"))
    assert "no answer wrote a choice's text and a letter" in (run_dir / "report.md").read_text()


def test_no_mcq_reading_section_without_generated_answers(run_dir):
    build_report(build(ResultsParams, {"run_dir": str(run_dir)}, "test"))
    assert "read the choices" not in (run_dir / "report.md").read_text()


# --- the first screen: summary, story figure, claims table; run-relative paths only ---------------------------
def test_first_screen_has_summary_figure_and_claims_and_no_machine_path(story_run):
    import re

    from avere_utils.publish import MACHINE_PATH

    # the stress readings of the bars: a manifest and scored predictions per variant
    (story_run / "manifests").mkdir()
    kinds = ["relevant"] * 4 + ["spurious"] * 2 + ["hallucination"] * 2
    (story_run / "manifests" / "emorealm.jsonl").write_text("".join(json.dumps(
        {"id": f"s{i}", "text": {"task": "reasoning_stress_video", "kind": k, "choices": ["(A) Yes", "(B) No"]}}) + "\n"
        for i, k in enumerate(kinds)))
    (story_run / "predictions").mkdir()
    for v, lo in (("reference", [3, 2, 1, -1, 2, -2, 1, -3]), ("avem_dpo", [3, 2, 1, -1, -2, -3, -2, -3])):
        (story_run / "predictions" / f"emorealm-{v}.jsonl").write_text("".join(
            json.dumps({"id": f"s{i}", "scores": [float(x), 0.0]}) + "\n" for i, x in enumerate(lo)))
    P = build(ResultsParams, {"run_dir": str(story_run), "variants": VARIANTS}, "test")
    rep = build_report(P)
    text = (story_run / "report.md").read_text()
    head = "\n".join(text.splitlines()[:60])
    assert "## Summary" in head and "![story_auc_flip](figures/story_auc_flip.png)" in head
    assert "## The paper's claims and the kit's bars" in head and "| claim | column | paper | this run | holds |" in head
    assert head.count("\n1. **What the reference gets wrong.**") == 1 and "5. **What did not reproduce**" in head
    assert "reference 65.1 -> avem_dpo 83.3" in head  # the paper's numbers beside this run's, kit column names
    assert "AUC rel>spur is >= 5 points above the reference's" in head
    for link in re.findall(r"\]\((figures/[^)]+)\)", text):  # every figure the report links exists
        assert (story_run / link).is_file(), link
    assert str(story_run) not in text and not MACHINE_PATH.search(text.replace(str(story_run), ""))
    assert "rel>hal" in rep.tables["bars"]["claim"].str.cat()
    assert text.index("## The story, measured") < text.index("## This run, scoring mode")  # modes in the appendix
    settings = text.split("## Settings")[1]
    assert "..." not in settings.split("## Wall times")[0]  # whole, never cut
