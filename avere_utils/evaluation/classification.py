"""Notebook 05: zero-shot emotion recognition on DFEW, RAVDESS and MER2023.

The model answers the one-word prompt; three scoring modes turn its behaviour into a label and are
reported side by side (the top-level keys of the metrics file are the params' `headline_mode`):

* `paper`   - the released mapping with its flaws (unmatched -> happiness, empty answers dropped ...);
* `strict`  - the corrected lexicon; unmatched or missing = wrong, and counted;
* `scoring` - no parsing: the class whose name the model finds most likely after the prompt.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from avere_utils import benchmarks
from avere_utils.evaluation import common, registry
from avere_utils.evaluation.metrics import classification_metrics, disagreement
from avere_utils.evaluation.params import ClassificationParams
from avere_utils.evaluation.parsing import strict_label
from avere_utils.evaluation.predict import MediaFn, PredictionRun, PredictionTask
from avere_utils.evaluation.released import Outcome, paper_classify, record_text, released_classification_metrics
from avere_utils.evaluation.stage import Scored, Scorer
from avere_utils.records import Item

if TYPE_CHECKING:  # pandas is imported where a table is built; torch comes with the backend
    import pandas as pd

    from avere_utils.models.backend import Backend

log = logging.getLogger(__name__)

MODE_NOTES = {
    "paper": common.PAPER_MODE_NOTE + "; released word lists, negated sentences removed, missing and "
             "unmappable answers dropped, sklearn UAR over true+predicted labels",
    "strict": "corrected lexicon (adjectives, inflections, word-boundary negation); unmatched = wrong, counted",
    "scoring": "highest log-likelihood class name after the prompt (no parsing)",
}


def classes_for(benchmark: str) -> tuple[str, ...]:
    """The class set of a label benchmark (its record in benchmarks.BENCHMARKS)."""
    return benchmarks.get(benchmark).classes


def paper_outcomes(items: Sequence[Item], records: Mapping[str, dict[str, Any]],
                   classes: Sequence[str]) -> list[Outcome]:
    """The released mapping per item: a label, or dropped as "missing" / "error"."""
    return [paper_classify(record_text(records.get(it.id)), classes) for it in items]


# --- the modes: how each reads a label, and which items its metrics count ------------------------------
Records = Mapping[str, dict[str, Any]]
Labels = list[str | None]


def _paper_labels(items: Sequence[Item], records: Records, classes: Sequence[str]) -> Labels:
    return [o.value for o in paper_outcomes(items, records, classes)]


def _strict_labels(items: Sequence[Item], records: Records, classes: Sequence[str]) -> Labels:
    return [strict_label((records.get(it.id) or {}).get("generation")) for it in items]


def _scoring_labels(items: Sequence[Item], records: Records, classes: Sequence[str]) -> Labels:
    out: Labels = []
    for it in items:
        scores = (records.get(it.id) or {}).get("scores")
        out.append(classes[int(np.argmax(scores))] if scores else None)
    return out


def _paper_metrics(items: Sequence[Item], labels: Sequence[str | None], records: Records,
                   classes: Sequence[str]) -> tuple[dict[str, Any], int, dict[str, int]]:
    """Items without a prediction, or on which the released mapping fails, leave the denominators; UAR /
    macro F1 over true + predicted labels (as released)."""
    outcomes = paper_outcomes(items, records, classes)
    kept = [(it.label, o.value) for it, o in zip(items, outcomes) if o.dropped is None]
    y_t, y_p = [t for t, _ in kept], [p for _, p in kept]
    out = classification_metrics(y_t, y_p, classes)
    out.update(released_classification_metrics(y_t, y_p))
    dropped = {"n_dropped_missing": sum(o.dropped == "missing" for o in outcomes),
               "n_dropped_error": sum(o.dropped == "error" for o in outcomes)}
    return out, len(y_t), dropped


def _every_item_metrics(items: Sequence[Item], labels: Sequence[str | None], records: Records,
                        classes: Sequence[str]) -> tuple[dict[str, Any], int, dict[str, int]]:
    """Every item counts; an unusable answer is wrong."""
    out = classification_metrics([it.label for it in items], list(labels), classes)
    return out, len(items), {"n_dropped_missing": 0, "n_dropped_error": 0}


@dataclass(frozen=True)
class LabelMode:
    labels: Callable[[Sequence[Item], Records, Sequence[str]], Labels]
    answer_key: str  # the record field an item needs to count as answered
    metrics: Callable[[Sequence[Item], Sequence[str | None], Records, Sequence[str]],
                      tuple[dict[str, Any], int, dict[str, int]]]  # (metrics, n_scored, dropped counts)


MODES: dict[str, LabelMode] = {
    "paper": LabelMode(_paper_labels, "generation", _paper_metrics),
    "strict": LabelMode(_strict_labels, "generation", _every_item_metrics),
    "scoring": LabelMode(_scoring_labels, "scores", _every_item_metrics),
}


def label_mode(mode: str) -> LabelMode:
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; known: {list(MODES)}")
    return MODES[mode]


def predicted_labels(mode: str, items: Sequence[Item], records: Records, classes: Sequence[str]) -> Labels:
    """One label per item (None = no answer usable by this mode)."""
    return label_mode(mode).labels(items, records, classes)


def score_mode(mode: str, items: Sequence[Item], labels: Sequence[str | None], records: Records,
               classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of one mode.  `paper` drops items without a prediction or on which the released mapping
    fails from the denominators, and takes UAR / macro F1 over true + predicted labels (as released);
    the other modes keep every item and count an unusable answer as wrong."""
    spec = label_mode(mode)
    answered = sum(bool((records.get(it.id) or {}).get(spec.answer_key)) for it in items)
    parsed = sum(lab is not None for lab in labels)
    n = len(items)
    out, n_scored, dropped = spec.metrics(items, labels, records, classes)
    out.update(n_items=n, n_scored=n_scored, **dropped, n_answered=answered, n_parsed=parsed,
               coverage=100 * parsed / n if n else 0.0, note=MODE_NOTES[mode])
    return out


def score_records(items: Sequence[Item], records: Records, modes: Sequence[str], classes: Sequence[str]
                  ) -> tuple[dict[str, Labels], dict[str, dict[str, Any]]]:
    """(labels, metrics) of every mode."""
    labels = {m: predicted_labels(m, items, records, classes) for m in modes}
    return labels, {m: score_mode(m, items, labels[m], records, classes) for m in modes}


def build_task(params: ClassificationParams, classes: Sequence[str]) -> PredictionTask:
    need_text = any(m in params.modes for m in ("paper", "strict"))
    candidates = [params.label_answer_template.format(label=c) for c in classes]
    return PredictionTask(prompt_for=lambda it: params.prompt, generate=need_text,
                          candidates_for=(lambda it: candidates) if "scoring" in params.modes else None)


HEADLINE_KEYS = ("uar", "war", "macro_f1", "weighted_f1", "per_class", "confusion", "n_items", "n_scored",
                 "n_dropped_missing", "n_dropped_error", "coverage")


class ClassificationScorer(Scorer):
    """DFEW, RAVDESS and MER2023: one-word answers read as a class, in every mode of `params.modes`."""

    def __init__(self, benchmark: str):
        super().__init__(benchmark)
        self.classes = classes_for(benchmark)

    def prepare(self, params: ClassificationParams, items: list[Item]) -> list[Item]:
        bad = sorted({it.label for it in items if it.label not in self.classes}, key=str)
        if bad:
            raise ValueError(f"{self.benchmark}: item labels {bad} are not among the classes {list(self.classes)}")
        return items

    def task(self, params: ClassificationParams) -> PredictionTask:
        return build_task(params, self.classes)

    def settings(self, params: ClassificationParams, task: PredictionTask, items: Sequence[Item]) -> dict[str, Any]:
        return {"prompt": params.prompt,
                "candidates": task.candidates_for(items[0]) if task.candidates_for else None}

    def protocol(self, params: ClassificationParams) -> dict[str, Any]:
        return {"prompt": params.prompt, "label_answer_template": params.label_answer_template}

    def score(self, params: ClassificationParams, items: Sequence[Item], run: PredictionRun) -> Scored:
        labels, modes = score_records(items, run.records, params.modes, self.classes)
        head = modes[params.headline_mode]
        return Scored(params.headline_mode, {
            "classes": list(self.classes),
            **{k: head[k] for k in HEADLINE_KEYS},
            "n_missing": sum(it.id not in run.records or "error" in run.records[it.id] for it in items),
            "modes": modes,
            "disagreement": disagreement(labels) if len(labels) > 1 else {},
        })

    def headline_keys(self, params: ClassificationParams) -> tuple[str, ...]:
        return (*benchmarks.get(self.benchmark).headline, "coverage")

    def score_text(self, items: Sequence[Item], records: Records, modes: Sequence[str]) -> dict[str, Any]:
        """`avere-kit score`: the modes of text answers made anywhere (no model run)."""
        labels, scored = score_records(items, records, modes, self.classes)
        return {"classes": list(self.classes), "modes": scored,
                "disagreement": disagreement(labels) if len(labels) > 1 else {}}


def evaluate_benchmark(params: ClassificationParams, benchmark: str, backend: Backend, *,
                       items: Sequence[Item] | None = None, media_fn: MediaFn | None = None,
                       media_settings: Any = None) -> dict[str, Any]:
    """Notebook 05's name for `registry.evaluate` (a notebook's code is part of its stage's reuse key)."""
    return registry.evaluate(params, benchmark, backend, items=items, media_fn=media_fn,
                             media_settings=media_settings)


def summary_frame(results: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per (benchmark, mode): the headline numbers and how many items each mode counted."""
    import pandas as pd

    rows = [{"benchmark": bench, "mode": mode, **{k: m[k] for k in ("uar", "war", "macro_f1", "weighted_f1",
                                                                     "coverage", "n_scored", "n_items")}}
            for bench, metrics in results.items() for mode, m in metrics["modes"].items()]
    return pd.DataFrame(rows).set_index(["benchmark", "mode"]).round(2)


def example_frame(params: ClassificationParams, benchmark: str, n: int = 8) -> pd.DataFrame:
    """Answers next to the label each mode reads from them, the items where modes disagree first."""
    import pandas as pd

    from avere_utils.evaluation.predict import read_records

    classes = classes_for(benchmark)
    items = common.load_items(params, benchmark)
    records = {r["id"]: r for r in read_records(common.predictions_file(params, benchmark))}
    labels = {m: predicted_labels(m, items, records, classes) for m in params.modes}
    rows = [{"id": it.id, "true": it.label, "answer": (records.get(it.id) or {}).get("generation"),
             **{m: labels[m][i] for m in params.modes}} for i, it in enumerate(items)]
    df = pd.DataFrame(rows)
    df["modes_disagree"] = df[list(params.modes)].nunique(axis=1, dropna=False) > 1
    return df.sort_values("modes_disagree", ascending=False, kind="stable").head(n).reset_index(drop=True)
