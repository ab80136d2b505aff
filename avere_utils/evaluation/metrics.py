"""Metric equations as pure functions (tested against scikit-learn and hand-computed cases).

Classification metrics come from one confusion matrix whose rows are the true classes and whose
columns are the classes plus one extra column for "anything else" (no label, or a label outside the
benchmark's classes): such predictions are wrong and lower recall, but are nobody's precision.
All percentages are in percent (0-100), as the paper reports them.
"""
from __future__ import annotations

import math
from itertools import combinations
from typing import Any, Mapping, Sequence

import numpy as np

OTHER = "<other>"  # confusion-matrix column for unmatched / out-of-class predictions


def confusion(y_true: Sequence[str], y_pred: Sequence[str | None], classes: Sequence[str]) -> np.ndarray:
    """Counts [len(classes), len(classes) + 1]; the last column collects predictions outside `classes`."""
    index = {c: i for i, c in enumerate(classes)}
    cm = np.zeros((len(classes), len(classes) + 1), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        if t not in index:
            raise ValueError(f"true label {t!r} is not one of the benchmark classes {list(classes)}")
        cm[index[t], index.get(p, len(classes)) if p is not None else len(classes)] += 1
    return cm


def _safe_div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.divide(a, b, out=np.zeros_like(a, dtype=np.float64), where=b > 0)


def classification_metrics(y_true: Sequence[str], y_pred: Sequence[str | None],
                           classes: Sequence[str]) -> dict[str, Any]:
    """UAR (macro recall), WAR (accuracy = support-weighted recall), macro / weighted F1, per-class
    precision / recall / F1 / support, all in percent.  Classes absent from y_true are left out of the
    macro means (their recall is undefined), as UAR over the classes a test set actually has."""
    cm = confusion(y_true, y_pred, classes)
    tp = np.diag(cm[:, : len(classes)]).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm[:, : len(classes)].sum(axis=0).astype(np.float64)
    recall = _safe_div(tp, support)
    precision = _safe_div(tp, predicted)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    present = support > 0
    n = support.sum()
    out: dict[str, Any] = {
        "uar": 100 * float(recall[present].mean()) if present.any() else 0.0,
        "war": 100 * float(tp.sum() / n) if n else 0.0,
        "macro_f1": 100 * float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": 100 * float((f1 * support).sum() / n) if n else 0.0,
        "per_class": {
            c: {"precision": 100 * float(precision[i]), "recall": 100 * float(recall[i]),
                "f1": 100 * float(f1[i]), "support": int(support[i])}
            for i, c in enumerate(classes)
        },
        "confusion": {"rows": list(classes), "columns": [*classes, OTHER], "counts": cm.tolist()},
    }
    return out


def harmonic_mean(a: float, b: float) -> float:
    """2ab / (a + b), 0 when both are 0 (the Yes/No 'F1' of EmoReAlM)."""
    return 2 * a * b / (a + b) if (a + b) > 0 else 0.0


def accuracy(correct: Sequence[bool]) -> float:
    """Percent correct; 0 for an empty list (nothing answered is nothing right)."""
    return 100 * sum(map(bool, correct)) / len(correct) if correct else 0.0


def yes_no_metrics(correct: Sequence[bool], gold_is_yes: Sequence[bool]) -> dict[str, float | None]:
    """Accuracy on Yes-items, on No-items and their harmonic mean (the paper's precision/recall/F1).
    A side without items has no accuracy (None), and then no harmonic mean either."""
    yes = [c for c, y in zip(correct, gold_is_yes, strict=True) if y]
    no = [c for c, y in zip(correct, gold_is_yes, strict=True) if not y]
    ya = accuracy(yes) if yes else None
    na = accuracy(no) if no else None
    return {"yes_accuracy": ya, "no_accuracy": na,
            "f1": harmonic_mean(ya, na) if ya is not None and na is not None else None,
            "n_yes": len(yes), "n_no": len(no)}


def mean_or_nan(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def disagreement(labels_by_mode: Mapping[str, Sequence[Any]]) -> dict[str, float]:
    """Pairwise share (percent) of items on which two modes give a different answer (None included)."""
    out: dict[str, float] = {}
    for a, b in combinations(sorted(labels_by_mode), 2):
        xs, ys = labels_by_mode[a], labels_by_mode[b]
        if len(xs) != len(ys):
            raise ValueError(f"modes {a} and {b} have {len(xs)} and {len(ys)} answers")
        out[f"{a}_vs_{b}"] = 100 * sum(x != y for x, y in zip(xs, ys)) / len(xs) if xs else 0.0
    return out
