"""report/discrimination.py: the stress answers split into discrimination (AUC) and a shift to No (Yes-rates
at the reference's relevant Yes-rate), read from predictions files."""
from __future__ import annotations

import json

import numpy as np
import pytest

from avere_utils.report import discrimination as d
from avere_utils.report import story


def test_auc_counts_pairs_and_half_ties():
    assert d.auc(np.array([2.0, 3.0]), np.array([0.0, 1.0])) == 1.0
    assert d.auc(np.array([0.0]), np.array([1.0])) == 0.0
    assert d.auc(np.array([1.0, 0.0]), np.array([1.0])) == pytest.approx(0.25)  # one tie (1/2), one below
    assert np.isnan(d.auc(np.array([]), np.array([1.0])))


def test_matched_threshold_keeps_the_rate_and_moves_with_a_shift():
    rel = np.array([-3.0, -1.0, 0.5, 2.0])
    assert d.matched_threshold(rel, 50.0) == -0.25  # midway between the items left below and kept above
    assert d.matched_threshold(rel - 4.0, 50.0) == -4.25
    assert np.mean(rel > d.matched_threshold(rel, 75.0)) == 0.75
    assert np.mean(rel > d.matched_threshold(rel, 25.0)) == 0.25 and d.matched_threshold(rel, 26.0) == 1.25
    assert np.mean(rel > d.matched_threshold(rel, 100.0)) == 1.0 and np.mean(rel > d.matched_threshold(rel, 0.0)) == 0.0


def test_a_pure_shift_to_no_changes_no_reading_but_the_yes_rates():
    rng = np.random.default_rng(0)
    ref = {"relevant": rng.normal(2, 1, 200), "spurious": rng.normal(1, 1, 100), "hallucination": rng.normal(0.5, 1, 100)}
    shifted = {k: v - 1.5 for k, v in ref.items()}
    rate = 100 * np.mean(ref["relevant"] > 0)
    a, b = d.readings(ref, rate), d.readings(shifted, rate)
    assert a == pytest.approx(b)
    assert 100 * np.mean(shifted["spurious"] > 0) < a["matched Yes spurious"] - 20  # the raw rate fell anyway
    apart = {**ref, "spurious": ref["spurious"] - 1.5}  # only the spurious items move: discrimination
    c = d.readings(apart, rate)
    assert c["AUC rel>spur"] > a["AUC rel>spur"] + 10 and c["matched Yes spurious"] < a["matched Yes spurious"] - 20


def _write_run(root, variants_lo, kinds, seeds=()):
    (root / "manifests").mkdir(parents=True)
    (root / "predictions").mkdir()
    items = []
    for i, kind in enumerate(kinds):
        items.append({"id": f"s{i}", "text": {"task": "reasoning_stress_video", "kind": kind, "answer": "A",
                                              "choices": ["(A) Yes", "(B) No"]}})
    items.append({"id": "q0", "text": {"task": "reasoning_basic_video", "choices": ["(A) x", "(B) y"], "answer": "A"}})
    (root / "manifests" / "emorealm.jsonl").write_text("".join(json.dumps(it) + "\n" for it in items))

    def preds(folder, v, lo):
        recs = [{"id": f"s{i}", "candidates": ["Yes (A)", "No (B)"], "scores": [float(x), 0.0]} for i, x in enumerate(lo)]
        recs.append({"id": "q0", "candidates": ["x (A)", "y (B)"], "scores": [0.0, -1.0]})
        (folder / f"emorealm-{v}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    for v, lo in variants_lo.items():
        preds(root / "predictions", v, lo)
    for name, per in seeds:
        (root / "seeds" / name / "predictions").mkdir(parents=True)
        (root / "seeds" / name / "metrics").mkdir()
        for v, lo in per.items():
            preds(root / "seeds" / name / "predictions", v, lo)


def test_values_over_the_base_run_and_its_seeds(tmp_path):
    kinds = ["relevant"] * 4 + ["spurious"] * 2 + ["hallucination"] * 2
    ref = [3, 2, 1, -1, 2, -2, 1, -3]  # relevant Yes-rate 75 %
    dpo = [x - 1.5 for x in ref]  # the same order, shifted to No
    better = [3, 2, 1, -1, -2, -3, -2, -3]
    _write_run(tmp_path, {"reference": ref, "avem_dpo": dpo}, kinds, seeds=[("seed-1", {"avem_dpo": better})])
    values = d.discrimination_values(tmp_path, tmp_path / "seeds", ["reference", "avem_dpo"])
    per_modality = {"AUC rel>spur video", "AUC rel>hal video"}  # every item asks about the video: no audio rows
    assert set(values["quantity"]) == set(d.QUANTITY_STEMS) | per_modality  # no held-out manifest: no HO rows
    assert len(values[values["variant"] == "avem_dpo"]) == 2 * (len(d.QUANTITY_STEMS) + 2)  # base + seed-1
    base = values[(values["run"] == "base")].set_index(["variant", "quantity"])["value"]
    assert base[("reference", "AUC rel>spur video")] == base[("reference", "AUC rel>spur")]
    assert base[("avem_dpo", "AUC rel>spur")] == base[("reference", "AUC rel>spur")] == pytest.approx(68.75)
    assert base[("avem_dpo", "matched Yes spurious")] == base[("reference", "matched Yes spurious")] == 50.0
    table = story.story_table(values, ["reference", "avem_dpo"], d.QUANTITIES)
    # spurious: 50 (the shift) and 0 (seed-1) against 50; hallucination the same: 25 points below each
    checks = d.check_matched(table, "avem_dpo")
    assert [c.holds for c in checks[:2]] == [True, True] and "drop +25.0" in checks[0].measured
    assert [c.holds for c in d.check_matched(table, "avem_dpo", drop=30.0)[:2]] == [False, False]
    assert all(c.holds is None for c in checks[2:])  # no held-out predictions: undecided, not passed


def _write_sensitivity(folder, variant, flips):
    folder.mkdir(parents=True, exist_ok=True)
    by = {k: {"all": {"flip_share": f, "n": 10}} for k, f in flips.items()}
    by["all"] = {"all": {"yes_rate_text": 55.0, "yes_rate_noise": 80.0, "n": 30}}
    (folder / f"media_sensitivity-{variant}.json").write_text(json.dumps(
        {"benchmarks": {"emorealm": {"by_kind": by, "flip_share_rel_hal": 40.0}}}))


def test_media_sensitivity_values_read_every_run(tmp_path):
    _write_sensitivity(tmp_path / "metrics", "avem_dpo", {"relevant": 30.0, "hallucination": 50.0, "spurious": 5.0})
    _write_sensitivity(tmp_path / "seeds" / "seed-1" / "metrics", "avem_dpo",
                       {"relevant": 10.0, "hallucination": 20.0, "spurious": 0.0})
    values = d.media_sensitivity_values(tmp_path, tmp_path / "seeds", ["reference", "avem_dpo"])
    assert set(values["run"]) == {"base", "seed-1"} and set(values["variant"]) == {"avem_dpo"}
    got = values[values["run"] == "seed-1"].set_index("quantity")["value"]
    assert got["flip halluc"] == 20.0 and got["Yes text"] == 55.0 and got["flip rel+hal"] == 40.0


def test_reference_seed_values_use_each_seeds_own_reference(tmp_path):
    kinds = ["relevant"] * 4 + ["spurious"] * 2 + ["hallucination"] * 2
    _write_run(tmp_path, {"reference": [3, 2, 1, -1, 2, -2, 1, -3], "avem_dpo": [3, 2, 1, -1, -2, -3, -2, -3]}, kinds)
    other = tmp_path / "reference_seeds" / "seed-1"
    _write_run(other, {"reference": [1, 1, 1, 1, 1, 1, 1, 1], "avem_dpo": [3, 2, 1, 0, -2, -3, -2, -3]}, kinds)
    values = d.reference_seed_values(tmp_path, ["reference", "avem_dpo"])
    assert set(values["run"]) == {"base", "seed-1"}
    auc = values[values["quantity"] == "AUC rel>spur"].set_index(["run", "variant"])["value"]
    assert auc[("seed-1", "reference")] == 50.0 and auc[("base", "avem_dpo")] == 100.0


def test_reference_seeds_link_the_data_and_retrain_the_reference(tmp_path, monkeypatch):
    from avere_utils import runner, sweep

    for rel in ("world", "manifests", "pairs", "cache", "models/reference"):
        (tmp_path / rel).mkdir(parents=True)
    calls = []
    monkeypatch.setattr(runner, "run", lambda profile, **kw: calls.append(kw))
    dirs = sweep.reference_seeds("tiny", [1, 2], out=str(tmp_path), echo=lambda s: None)
    assert [d.name for d in dirs] == ["seed-1", "seed-2"] and len(calls) == 2
    assert calls[0]["only"][0] == "03_reference_model" and calls[0]["overrides"] == {"03_reference_model.seed": 1}
    seed_dir = tmp_path / "reference_seeds" / "seed-1"
    assert (seed_dir / "pairs").is_symlink() and not (seed_dir / "models").exists()  # its own reference
    assert sweep.reference_seeds("tiny", [1], out=str(tmp_path), echo=lambda s: None) and len(calls) == 2  # done


# --- the bars (report/bars.py): every bar holds, fails and is undecided on a table built for it --------------
import pandas as pd  # noqa: E402

from avere_utils.report import bars  # noqa: E402

BAR_TABLE = {  # variant: {quantity: (mean, sd, n)}
    "reference": {"AUC rel>hal": (80, float("nan"), 1), "AUC rel>spur": (82, float("nan"), 1),
                  "matched Yes halluc": (70, float("nan"), 1), "matched Yes spurious": (60, float("nan"), 1),
                  "Yes relevant": (85, float("nan"), 1), "HO AUC rel>hal": (78, float("nan"), 1),
                  "flip rel+hal": (20, float("nan"), 1), "EMER halluc / desc": (1.3, float("nan"), 1),
                  "EMER irrelevant / desc": (0.46, float("nan"), 1), "EMER clue recall": (58, float("nan"), 1),
                  "DFEW UAR": (96, float("nan"), 1), "RAV UAR": (100, float("nan"), 1)},
    "avem_dpo": {"AUC rel>hal": (90, 1, 3), "AUC rel>spur": (88, 1, 3), "matched Yes halluc": (50, 2, 3),
                 "matched Yes spurious": (45, 2, 3), "Yes relevant": (80, 2, 3), "HO AUC rel>hal": (85, 1, 3),
                 "flip rel+hal": (45, 2, 3), "EMER halluc / desc": (0.9, 0.1, 3),
                 "EMER irrelevant / desc": (0.4, 0.05, 3), "EMER clue recall": (56, 1, 3),
                 "DFEW UAR": (95, 0.5, 3), "RAV UAR": (99, 0.5, 3)},
    "naive_dpo": {"AUC rel>hal": (85, 1, 3), "flip rel+hal": (30, 2, 3)},
    "no_pmp": {"AUC rel>hal": (86, 1, 3)},
    "no_tpd": {"AUC rel>hal": (90.5, 1, 3), "AUC rel>spur": (89, 1, 3), "matched Yes halluc": (52, 2, 3),
               "matched Yes spurious": (44, 2, 3)},
}


def _bar_table(changes=None):
    rows = [{"variant": v, "quantity": q, "mean": float(m), "sd": float(s), "n": n}
            for v, qs in BAR_TABLE.items() for q, (m, s, n) in qs.items()]
    t = pd.DataFrame(rows)
    for (v, q), m in (changes or {}).items():
        t.loc[(t["variant"] == v) & (t["quantity"] == q), "mean"] = m
    return t


def test_every_bar_holds_on_a_table_built_to_satisfy_it():
    checks = bars.flat(bars.bar_checks(_bar_table(), "avem_dpo"))
    assert len(checks) == 3 + 3 + 1 + 2 + 2 + 5
    assert all(c.holds for _, c in checks), [c.claim for _, c in checks if not c.holds]


@pytest.mark.parametrize("variant, quantity, value, group, index", [
    ("avem_dpo", "AUC rel>hal", 87.9, "discrimination", 0),  # a 7.9-point gain
    ("naive_dpo", "AUC rel>hal", 88.5, "discrimination", 1),  # gap 1.5 under 2 pooled sd (1)
    ("avem_dpo", "AUC rel>spur", 86.9, "discrimination", 2),
    ("avem_dpo", "matched Yes halluc", 55.5, "matched", 0),
    ("avem_dpo", "matched Yes spurious", 50.5, "matched", 1),
    ("avem_dpo", "Yes relevant", 74.0, "matched", 2),
    ("avem_dpo", "HO AUC rel>hal", 82.9, "heldout", 0),
    ("no_pmp", "AUC rel>hal", 88.5, "ablations", 0),
    ("avem_dpo", "flip rel+hal", 39.0, "media", 0),  # under twice the reference's 20
    ("naive_dpo", "flip rel+hal", 45.0, "media", 1),  # not more than naive's
    ("avem_dpo", "EMER halluc / desc", 1.0, "descriptions", 0),  # 23 % below, not 25
    ("avem_dpo", "EMER irrelevant / desc", 0.46, "descriptions", 1),
    ("avem_dpo", "EMER clue recall", 54.9, "descriptions", 2),
    ("avem_dpo", "DFEW UAR", 93.9, "descriptions", 3),
])
def test_each_bar_fails_when_its_number_misses(variant, quantity, value, group, index):
    checks = bars.bar_checks(_bar_table({(variant, quantity): value}), "avem_dpo")
    assert checks[group][index].holds is False, checks[group][index]


def test_the_tpd_bar_needs_one_reading_worse_and_missing_inputs_are_undecided():
    t = _bar_table({("no_tpd", "AUC rel>hal"): 91, ("no_tpd", "AUC rel>spur"): 89,
                    ("no_tpd", "matched Yes halluc"): 49, ("no_tpd", "matched Yes spurious"): 44})
    assert bars.check_ablations(t, "avem_dpo")[1].holds is False
    missing = bars.bar_checks(_bar_table()[lambda d: d["variant"] != "naive_dpo"], "avem_dpo")
    assert missing["discrimination"][1].holds is None and missing["media"][1].holds is None
    one_run = _bar_table().assign(sd=float("nan"), n=1)
    assert bars.bar_checks(one_run, "avem_dpo")["discrimination"][1].holds is None  # no seeds: no pooled sd
    assert bars.all_hold([True, None]) is None and bars.all_hold([True, False, None]) is False
    assert bars.all_hold([]) is None and bars.all_hold([True, True]) is True
    assert bars.verdict(float("nan")) == "undecided"


def test_a_bar_holds_for_every_reference_seed_only_if_it_holds_on_each(tmp_path):
    kinds = ["relevant"] * 4 + ["spurious"] * 2 + ["hallucination"] * 2
    _write_run(tmp_path, {"reference": [3, 2, 1, -1, 2, -2, 1, -3], "avem_dpo": [3, 2, 1, -1, -2, -3, -2, -3]}, kinds)
    other = tmp_path / "reference_seeds" / "seed-1"
    _write_run(other, {"reference": [1, 1, 1, 1, -9, -9, -9, -9], "avem_dpo": [3, 2, 1, 0, -2, -3, -2, -3]}, kinds)
    rows = bars.evaluate(tmp_path, None, ["reference", "avem_dpo"], "scoring")
    spur = rows[rows["claim"].str.contains("AUC rel>spur is >= 5")].iloc[0]
    assert spur["holds"] is True or spur["holds"] == True  # noqa: E712  base: 68.75 -> 100
    assert spur["holds seed-1"] is False or spur["holds seed-1"] == False  # noqa: E712  seed-1: 100 -> 100
    assert spur["holds every reference seed"] is False
    recall = rows[rows["claim"].str.contains("clue recall")].iloc[0]
    assert recall["holds"] is None and recall["holds every reference seed"] is None  # no EMER: undecided
