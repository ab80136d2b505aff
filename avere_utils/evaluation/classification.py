"""Notebook 05: zero-shot emotion recognition on DFEW, RAVDESS and MER2023.

The model answers the one-word prompt; three scoring modes turn its behaviour into a label and are
reported side by side (the top-level keys of the metrics file are the params' `headline_mode`):

* `paper`   - the released mapping with its flaws (unmatched -> happiness, empty answers dropped ...);
* `strict`  - the corrected lexicon; unmatched or missing = wrong, and counted;
* `scoring` - no parsing: the class whose name the model finds most likely after the prompt.
"""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from avere_utils.emotions import EMOTIONS, MER2023_CLASSES
from avere_utils.evaluation import common
from avere_utils.evaluation.metrics import classification_metrics, disagreement
from avere_utils.evaluation.params import ClassificationParams
from avere_utils.evaluation.parsing import strict_label
from avere_utils.evaluation.predict import MediaFn, PredictionTask, run_predictions
from avere_utils.evaluation.released import Outcome, paper_classify, record_text, released_classification_metrics
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
    """DFEW and RAVDESS (calm dropped) use the seven DFEW classes; MER2023 its five."""
    return MER2023_CLASSES if benchmark == "mer2023" else EMOTIONS


def predicted_labels(mode: str, items: Sequence[Item], records: Mapping[str, dict[str, Any]],
                     classes: Sequence[str]) -> list[str | None]:
    """One label per item (None = no answer usable by this mode)."""
    if mode == "paper":
        return [o.value for o in paper_outcomes(items, records, classes)]
    out: list[str | None] = []
    for it in items:
        rec = records.get(it.id) or {}
        if mode == "strict":
            out.append(strict_label(rec.get("generation")))
        elif mode == "scoring":
            scores = rec.get("scores")
            out.append(classes[int(np.argmax(scores))] if scores else None)
        else:
            raise ValueError(f"unknown scoring mode {mode!r}")
    return out


def paper_outcomes(items: Sequence[Item], records: Mapping[str, dict[str, Any]],
                   classes: Sequence[str]) -> list[Outcome]:
    """The released mapping per item: a label, or dropped as "missing" / "error"."""
    return [paper_classify(record_text(records.get(it.id)), classes) for it in items]


def score_mode(mode: str, items: Sequence[Item], labels: Sequence[str | None],
               records: Mapping[str, dict[str, Any]], classes: Sequence[str]) -> dict[str, Any]:
    """Metrics of one mode.  `paper` drops items without a prediction or on which the released mapping
    fails from the denominators, and takes UAR / macro F1 over true + predicted labels (as released);
    the other modes keep every item and count an unusable answer as wrong."""
    y_true = [it.label for it in items]
    answered = sum(bool((records.get(it.id) or {}).get("generation" if mode != "scoring" else "scores"))
                   for it in items)
    parsed = sum(lab is not None for lab in labels)
    n = len(items)
    if mode == "paper":
        outcomes = paper_outcomes(items, records, classes)
        kept = [(t, o.value) for t, o in zip(y_true, outcomes) if o.dropped is None]
        y_t, y_p = [t for t, _ in kept], [p for _, p in kept]
        out = classification_metrics(y_t, y_p, classes)
        out.update(released_classification_metrics(y_t, y_p))
        dropped = {"n_dropped_missing": sum(o.dropped == "missing" for o in outcomes),
                   "n_dropped_error": sum(o.dropped == "error" for o in outcomes)}
    else:
        y_t, y_p = y_true, list(labels)
        out = classification_metrics(y_t, y_p, classes)
        dropped = {"n_dropped_missing": 0, "n_dropped_error": 0}
    out.update(n_items=n, n_scored=len(y_t), **dropped, n_answered=answered, n_parsed=parsed,
               coverage=100 * parsed / n if n else 0.0, note=MODE_NOTES[mode])
    return out


def build_task(params: ClassificationParams, classes: Sequence[str]) -> PredictionTask:
    need_text = any(m in params.modes for m in ("paper", "strict"))
    candidates = [params.label_answer_template.format(label=c) for c in classes]
    return PredictionTask(prompt_for=lambda it: params.prompt, generate=need_text,
                          candidates_for=(lambda it: candidates) if "scoring" in params.modes else None)


def evaluate_benchmark(params: ClassificationParams, benchmark: str, backend: Backend, *,
                       items: Sequence[Item] | None = None, media_fn: MediaFn | None = None,
                       media_settings: Any = None) -> dict[str, Any]:
    """Predict (resumably), score in every mode, write `metrics/<benchmark>-<variant>.json`, return it."""
    t_start = time.perf_counter()
    classes = classes_for(benchmark)
    items = list(items) if items is not None else common.load_items(params, benchmark)
    bad = sorted({it.label for it in items if it.label not in classes}, key=str)
    if bad:
        raise ValueError(f"{benchmark}: item labels {bad} are not among the classes {list(classes)}")
    if media_fn is None:
        media_fn, media_settings = common.make_media_fn(params, backend)
    task = build_task(params, classes)
    settings = common.run_settings(params, media_settings, prompt=params.prompt,
                                   candidates=task.candidates_for(items[0]) if task.candidates_for else None)
    run = run_predictions(backend, items, common.predictions_file(params, benchmark), task,
                          common.decoding(params), settings=settings, media_fn=media_fn,
                          batch_size=params.batch_size, stale_policy=params.stale_predictions,
                          desc=f"{benchmark}-{params.variant}")
    if not common.is_main_process():  # the other processes only predicted their shard
        return {}
    labels = {m: predicted_labels(m, items, run.records, classes) for m in params.modes}
    modes = {m: score_mode(m, items, labels[m], run.records, classes) for m in params.modes}
    head = modes[params.headline_mode]
    metrics: dict[str, Any] = {
        "variant": params.variant, "scoring_mode": params.headline_mode, "classes": list(classes),
        **{k: head[k] for k in ("uar", "war", "macro_f1", "weighted_f1", "per_class", "confusion",
                                "n_items", "n_scored", "n_dropped_missing", "n_dropped_error", "coverage")},
        "n_missing": sum(it.id not in run.records or "error" in run.records[it.id] for it in items),
        "modes": modes,
        "disagreement": disagreement(labels) if len(labels) > 1 else {},
        "model": common.model_info(params),
        "protocol": common.protocol(params, media_settings, prompt=params.prompt,
                                    label_answer_template=params.label_answer_template),
        "timing": {"computed_items": run.n_computed, "generate_s": run.generate_s, "scoring_s": run.scoring_s,
                   "media_s": run.media_s, "total_s": time.perf_counter() - t_start},
        "predictions_file": run.files[0],
    }
    common.write_metrics(params, benchmark, metrics)
    return metrics


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
