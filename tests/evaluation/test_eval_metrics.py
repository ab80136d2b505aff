"""Metric equations against scikit-learn and hand-computed cases."""
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support, recall_score

from avere_utils.emotions import EMOTIONS
from avere_utils.evaluation.metrics import (
    OTHER,
    accuracy,
    classification_metrics,
    confusion,
    disagreement,
    harmonic_mean,
    yes_no_metrics,
)


def _random_case(seed, n=300, classes=EMOTIONS, none_share=0.1):
    rng = np.random.default_rng(seed)
    y_true = list(rng.choice(classes, n))
    y_pred = [None if rng.random() < none_share else str(rng.choice([*classes, "calm"])) for _ in range(n)]
    return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_classification_metrics_match_sklearn(seed):
    y_true, y_pred = _random_case(seed)
    m = classification_metrics(y_true, y_pred, EMOTIONS)
    y_pred_s = [p if p is not None else OTHER for p in y_pred]  # sklearn needs a string for "no label"
    labels = list(EMOTIONS)
    assert m["uar"] == pytest.approx(100 * recall_score(y_true, y_pred_s, labels=labels, average="macro"))
    assert m["war"] == pytest.approx(100 * accuracy_score(y_true, y_pred_s))
    assert m["macro_f1"] == pytest.approx(100 * f1_score(y_true, y_pred_s, labels=labels, average="macro"))
    assert m["weighted_f1"] == pytest.approx(100 * f1_score(y_true, y_pred_s, labels=labels, average="weighted"))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred_s, labels=labels, zero_division=0)
    for i, c in enumerate(labels):
        assert m["per_class"][c]["precision"] == pytest.approx(100 * p[i])
        assert m["per_class"][c]["recall"] == pytest.approx(100 * r[i])
        assert m["per_class"][c]["f1"] == pytest.approx(100 * f[i])
        assert m["per_class"][c]["support"] == s[i]


def test_war_is_support_weighted_recall_and_uar_macro_by_hand():
    # 3 happy (2 right), 1 sad (right): recall happy 2/3, sad 1 -> UAR 83.33, WAR 75
    m = classification_metrics(["happiness"] * 3 + ["sadness"], ["happiness", "happiness", None, "sadness"],
                               ["happiness", "sadness"])
    assert m["uar"] == pytest.approx(100 * (2 / 3 + 1) / 2)
    assert m["war"] == pytest.approx(75.0)
    assert m["confusion"]["counts"] == [[2, 0, 1], [0, 1, 0]]
    assert m["per_class"]["happiness"]["precision"] == pytest.approx(100.0)


def test_absent_class_left_out_of_macro_means():
    m = classification_metrics(["anger", "anger"], ["anger", "fear"], ["anger", "fear"])
    assert m["uar"] == pytest.approx(50.0)  # fear has no support: not averaged as a 0
    assert m["per_class"]["fear"]["support"] == 0


def test_confusion_rejects_unknown_true_label():
    with pytest.raises(ValueError, match="not one of the benchmark classes"):
        confusion(["calm"], ["neutral"], EMOTIONS)


def test_harmonic_mean_and_yes_no():
    assert harmonic_mean(0.0, 0.0) == 0.0
    assert harmonic_mean(100.0, 0.0) == 0.0
    assert harmonic_mean(80.0, 40.0) == pytest.approx(2 * 80 * 40 / 120)
    # always "Yes": yes-accuracy 100, no-accuracy 0, F1 0
    m = yes_no_metrics([True, True, False, False], [True, True, False, False])
    assert (m["yes_accuracy"], m["no_accuracy"], m["f1"]) == (100.0, 0.0, 0.0)
    m = yes_no_metrics([True, False, True, True, False], [True, True, False, False, False])
    assert m["yes_accuracy"] == pytest.approx(50.0)
    assert m["no_accuracy"] == pytest.approx(200 / 3)
    assert m["f1"] == pytest.approx(harmonic_mean(50.0, 200 / 3))
    assert (m["n_yes"], m["n_no"]) == (2, 3)


def test_accuracy_and_disagreement():
    assert accuracy([]) == 0.0
    assert accuracy([True, False, False, True]) == 50.0
    d = disagreement({"strict": ["a", "b", None, "c"], "paper": ["a", "x", None, "c"], "scoring": ["a", "b", "c", "d"]})
    assert d == {"paper_vs_scoring": 75.0, "paper_vs_strict": 25.0, "scoring_vs_strict": 50.0}
    assert not math.isnan(d["paper_vs_strict"])


def test_yes_no_side_without_items_is_undefined():
    m = yes_no_metrics([True, False], [True, True])
    assert m["yes_accuracy"] == 50.0 and m["no_accuracy"] is None and m["f1"] is None
