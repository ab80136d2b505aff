"""Notebook 07: EmoReAlM, the paper's audiovisual emotion-reasoning benchmark.

Five tasks (two 4-option MCQs, three Yes/No); prompt = question + " " + the lettered choices.  Answers
are read in three modes reported side by side: `paper` (the released letter rule, flaws included),
`strict` (one chosen letter, or wrong) and `scoring` (the most likely choice, no parsing).  In the
synthetic world every stress item also has a `kind` (relevant / spurious / hallucination), which turns
the Yes/No accuracies into the two failure rates the paper is about.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from avere_utils.evaluation import common, mcq_reading, registry
from avere_utils.evaluation.metrics import accuracy, disagreement, mean_or_nan, yes_no_metrics
from avere_utils.evaluation.params import EmoRealmParams
from avere_utils.evaluation.parsing import choice_letters, split_choice, strict_letter, yes_no_choice
from avere_utils.evaluation.predict import MediaFn, PredictionRun, PredictionTask
from avere_utils.evaluation.released import (
    RELEASED_YES_NO_TASKS,
    paper_letter,
    record_text,
    released_answer_kind,
    released_average,
    released_task_metrics,
)
from avere_utils.evaluation.stage import Scored, Scorer, run_stage
from avere_utils.protocol import EMOREALM_PROMPT_TEMPLATE, EMOREALM_TASKS, STRESS_KINDS, STRESS_TASKS, emorealm_prompt
from avere_utils.records import Item

if TYPE_CHECKING:  # pandas is imported where a table is built; torch comes with the backend
    import pandas as pd

    from avere_utils.models.backend import Backend

log = logging.getLogger(__name__)

KINDS = STRESS_KINDS
MODE_NOTES = {
    "paper": common.PAPER_MODE_NOTE + "; right letter anywhere (regex), missing predictions dropped, empty "
             "answers wrong, yes_rate = released model_yes_percentage",
    "strict": "one chosen letter (article 'a' is not option A; Yes/No text maps to its choice); "
              "unparseable = wrong, counted",
    "scoring": "highest log-likelihood choice (no parsing)",
}


def build_prompt(item: Item, template: str = EMOREALM_PROMPT_TEMPLATE) -> str:
    return emorealm_prompt(item.text["question"], item.text["choices"], template)


def candidate_answers(item: Item, template: str = "{choice}") -> list[str]:
    """What `scoring` mode scores per choice, in the form the model was trained to answer."""
    out = []
    for choice in item.text["choices"]:
        letter, text = split_choice(choice)
        out.append(template.format(choice=choice, letter=letter, text=text))
    return out


def check_item(item: Item) -> None:
    t = item.text
    missing = [k for k in ("task", "question", "choices", "answer") if k not in t]
    if missing:
        raise ValueError(f"EmoReAlM item {item.id}: text lacks {missing}")
    letters = choice_letters(t["choices"])
    if t["answer"] not in letters:
        raise ValueError(f"EmoReAlM item {item.id}: answer {t['answer']!r} is not one of its letters {letters}")


# --- the modes: how each reads an answer (correct or not, and the letter chosen) ----------------------
Judged = tuple[bool | None, str | None]


def _judge_paper(item: Item, rec: Mapping[str, Any] | None) -> Judged:
    return paper_letter(record_text(rec), item.text["answer"]).value, None


def _judge_strict(item: Item, rec: Mapping[str, Any] | None) -> Judged:
    chosen = strict_letter((rec or {}).get("generation"), item.text["choices"])
    return chosen == item.text["answer"], chosen


def _judge_scoring(item: Item, rec: Mapping[str, Any] | None) -> Judged:
    scores = (rec or {}).get("scores")
    chosen = choice_letters(item.text["choices"])[int(np.argmax(scores))] if scores else None
    return chosen == item.text["answer"], chosen


MODES: dict[str, Callable[[Item, Mapping[str, Any] | None], Judged]] = {
    "paper": _judge_paper, "strict": _judge_strict, "scoring": _judge_scoring,
}


def judge_item(mode: str, item: Item, rec: Mapping[str, Any] | None) -> Judged:
    """(correct, chosen letter) of one item in one mode.  correct None = dropped (paper mode only);
    chosen None = no single letter chosen (paper mode never names one)."""
    if mode not in MODES:
        raise ValueError(f"unknown scoring mode {mode!r}; known: {list(MODES)}")
    return MODES[mode](item, rec)


def answer_kind(item: Item) -> str:
    """"yes" / "no" by the released rule; an item it cannot classify is an annotation error."""
    try:
        return released_answer_kind(item.text["choices"], item.text["answer"])
    except ValueError as e:
        raise ValueError(f"EmoReAlM item {item.id}: {e}") from None


def task_entry(mode: str, task: str, rows: Sequence[tuple[Item, bool | None, str | None]]) -> dict[str, Any]:
    """One task's metrics.  Paper: released rules over the kept items (Yes/No by task name, empty sides
    0, yes_rate = model_yes_percentage).  Other modes: every item, Yes/No by the choices, a side without
    items undefined (None), yes_rate = share of items whose chosen letter is Yes."""
    kept = [(it, c, ch) for it, c, ch in rows if c is not None]  # only paper mode drops anything
    correct = [bool(c) for _, c, _ in kept]
    entry: dict[str, Any] = {"n_items": len(rows), "n_scored": len(kept), "n_dropped_missing": len(rows) - len(kept)}
    if mode == "paper":
        kinds = [answer_kind(it) for it, _, _ in kept] if task in RELEASED_YES_NO_TASKS else None
        entry.update(released_task_metrics(correct, kinds))
        return entry
    # No kept item = undefined accuracy (None), not 0.
    entry["accuracy"] = accuracy(correct) if kept else None
    if rows and all(yes_no_choice(it.text["choices"]) is not None for it, _, _ in rows):
        gold_yes = [it.text["answer"] == yes_no_choice(it.text["choices"])["yes"] for it, _, _ in kept]
        entry.update(yes_no_metrics(correct, gold_yes))
        entry["yes_rate"] = 100 * sum(ch == yes_no_choice(it.text["choices"])["yes"] for it, _, ch in rows) / len(rows)
    return entry


def score_mode(mode: str, items: Sequence[Item], records: Mapping[str, dict[str, Any]],
               tasks: Sequence[str]) -> dict[str, Any]:
    """Per-task accuracy (+ Yes/No breakdown), the unweighted average, and the stress items by kind."""
    judged = [(it, *judge_item(mode, it, records.get(it.id))) for it in items]
    out: dict[str, Any] = {"tasks": {}}
    for task in tasks:
        entry = task_entry(mode, task, [(it, c, ch) for it, c, ch in judged if it.text["task"] == task])
        out["tasks"][task] = entry
        out[task] = entry["accuracy"] if entry["n_items"] else None
    present = [t for t in tasks if out["tasks"][t]["n_items"]]
    if mode == "paper":  # released: every task of the benchmark file, 0 when all its predictions are missing
        out["average_accuracy"] = released_average(out["tasks"][t]["accuracy"] for t in present)
    else:
        out["average_accuracy"] = mean_or_nan([out["tasks"][t]["accuracy"] for t in present
                                               if out["tasks"][t]["accuracy"] is not None])
    out["tasks_missing"] = [t for t in tasks if not out["tasks"][t]["n_items"]]
    out.update(by_kind(judged, mode))
    n = len(items)
    parsed = sum(c is not None and (mode == "paper" or ch is not None) for _, c, ch in judged)
    n_scored = sum(c is not None for _, c, _ in judged)
    out.update(n_items=n, n_scored=n_scored, n_dropped_missing=n - n_scored, n_dropped_error=0, n_parsed=parsed,
               coverage=100 * parsed / n if n else 0.0, note=MODE_NOTES[mode])
    return out


def by_kind(judged: Sequence[tuple[Item, bool | None, str | None]], mode: str) -> dict[str, Any]:
    """Stress items split by kind: accuracy, and the share answered Yes (the failure rate for the
    spurious and hallucination kinds, whose right answer is No).  Empty when items carry no kind.
    Paper mode never names a chosen letter, so its yes_rate is the released model_yes_percentage over
    the kept items: right on Yes-items plus wrong on No-items."""
    stress = [(it, c, ch) for it, c, ch in judged if it.text["task"] in STRESS_TASKS and it.text.get("kind")]
    if not stress:
        return {}
    kinds: dict[str, Any] = {}
    for kind in KINDS:
        rows = [(it, c, ch) for it, c, ch in stress if it.text["kind"] == kind]
        kept = [(it, c, ch) for it, c, ch in rows if c is not None]
        yes_rate = None
        if mode == "paper" and kept:
            said_yes = [bool(c) == (answer_kind(it) == "yes") for it, c, _ in kept]
            yes_rate = 100 * sum(said_yes) / len(kept)
        elif mode != "paper" and rows:
            said_yes = [ch is not None and ch == (yes_no_choice(it.text["choices"]) or {}).get("yes")
                        for it, _, ch in rows]
            yes_rate = 100 * sum(said_yes) / len(rows)
        kinds[kind] = {"n_items": len(rows), "accuracy": accuracy([c for _, c, _ in kept]) if kept else None,
                       "yes_rate": yes_rate}
    return {"by_kind": kinds,
            "hallucination_rate": kinds["hallucination"]["yes_rate"],
            "spurious_rate": kinds["spurious"]["yes_rate"]}


def check_items(items: Sequence[Item]) -> None:
    for it in items:
        check_item(it)
    unknown = sorted({it.text["task"] for it in items} - set(EMOREALM_TASKS))
    if unknown:
        raise ValueError(f"EmoReAlM items with unknown task keys {unknown}; known: {list(EMOREALM_TASKS)}")


def build_task(params: EmoRealmParams) -> PredictionTask:
    return PredictionTask(
        prompt_for=lambda it: build_prompt(it, params.prompt_template),
        generate=any(m in params.modes for m in ("paper", "strict")),
        candidates_for=((lambda it: candidate_answers(it, params.choice_answer_template))
                        if "scoring" in params.modes else None))


class EmoRealmScorer(Scorer):
    """EmoReAlM: lettered answers to the five tasks' questions, in every mode of `params.modes`."""

    def __init__(self, benchmark: str = "emorealm"):
        super().__init__(benchmark)
        self.n_skipped = 0

    def prepare(self, params: EmoRealmParams, items: list[Item]) -> list[Item]:
        check_items(items)
        self.n_skipped = sum(it.text["task"] not in params.tasks for it in items)
        if self.n_skipped:
            log.info("EmoReAlM: %d items of tasks outside params.tasks left out", self.n_skipped)
        return [it for it in items if it.text["task"] in params.tasks]

    def task(self, params: EmoRealmParams) -> PredictionTask:
        return build_task(params)

    def settings(self, params: EmoRealmParams, task: PredictionTask, items: Sequence[Item]) -> dict[str, Any]:
        return self.protocol(params)

    def protocol(self, params: EmoRealmParams) -> dict[str, Any]:
        return {"prompt_template": params.prompt_template, "choice_answer_template": params.choice_answer_template}

    def score(self, params: EmoRealmParams, items: Sequence[Item], run: PredictionRun) -> Scored:
        modes = {m: score_mode(m, items, run.records, params.tasks) for m in params.modes}
        head = modes[params.headline_mode]
        chosen = {m: [judge_item(m, it, run.records.get(it.id))[1] for it in items]
                  for m in params.modes if m != "paper"}
        correct = {m: [judge_item(m, it, run.records.get(it.id))[0] for it in items] for m in params.modes}
        return Scored(params.headline_mode, {
            **{k: v for k, v in head.items() if k != "note"},
            "n_skipped_other_tasks": self.n_skipped,
            "modes": modes,
            # generated answers only: which half of "text (letter)" fails (evaluation/mcq_reading.py)
            "mcq_reading": mcq_reading.summary(items, {it.id: (run.records.get(it.id) or {}).get("generation")
                                                       for it in items}),
            "disagreement": {"chosen_letter": disagreement(chosen) if len(chosen) > 1 else {},
                             "correctness": disagreement(correct) if len(correct) > 1 else {}},
        })

    def headline_keys(self, params: EmoRealmParams) -> tuple[str, ...]:
        return ("average_accuracy", *params.tasks, "coverage")

    def score_text(self, items: Sequence[Item], records: Mapping[str, dict[str, Any]],
                   modes: Sequence[str]) -> dict[str, Any]:
        """`avere-kit score`: the modes of text answers made anywhere, over the tasks the items cover."""
        tasks = [t for t in EMOREALM_TASKS if any(it.text["task"] == t for it in items)]
        return {"modes": {m: score_mode(m, items, records, tasks) for m in modes}}


def evaluate(params: EmoRealmParams, backend: Backend, *, items: Sequence[Item] | None = None,
             media_fn: MediaFn | None = None, media_settings: Any = None) -> dict[str, Any]:
    """Notebook 07's name for `registry.evaluate` (a notebook's code is part of its stage's reuse key)."""
    return registry.evaluate(params, "emorealm", backend, items=items, media_fn=media_fn,
                             media_settings=media_settings)


def evaluate_heldout(params: EmoRealmParams, backend: Backend) -> dict[str, Any] | None:
    """The stress items in held-out wordings (`params.heldout_benchmark`), in `params.heldout_modes`, into
    `metrics/<heldout_benchmark>-<variant>.json`; None when switched off or when notebook 01 wrote no such
    manifest (real data without rewordings), which is logged."""
    import dataclasses

    name = params.heldout_benchmark
    if not name:
        return None
    if not (Path(params.manifest_dir) / f"{name}.jsonl").is_file():
        log.warning("no %s manifest in %s: the held-out wordings are not evaluated", name, params.manifest_dir)
        return None
    modes = list(params.heldout_modes)
    held = dataclasses.replace(params, modes=modes, headline_mode=modes[0],
                               tasks=[t for t in params.tasks if t in STRESS_TASKS])
    return run_stage(held, name, backend, EmoRealmScorer(name))


def summary_frame(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """One row per mode: accuracy per task, the average, and the stress-item failure rates."""
    import pandas as pd

    rows = []
    for mode, m in metrics["modes"].items():
        row = {"mode": mode, **{t: m["tasks"][t]["accuracy"] for t in m["tasks"]},
               "average_accuracy": m["average_accuracy"], "coverage": m["coverage"], "n_scored": m["n_scored"]}
        if "hallucination_rate" in m:
            row.update(hallucination_rate=m["hallucination_rate"], spurious_rate=m["spurious_rate"])
        rows.append(row)
    return pd.DataFrame(rows).set_index("mode").round(2)


def yes_no_frame(metrics: Mapping[str, Any]) -> pd.DataFrame:
    """The Yes/No tasks: accuracy on Yes-items, on No-items and their harmonic mean, per mode."""
    import pandas as pd

    rows = [{"mode": mode, "task": t, **{k: e.get(k) for k in ("yes_accuracy", "no_accuracy", "f1", "n_yes", "n_no")}}
            for mode, m in metrics["modes"].items() for t, e in m["tasks"].items() if "f1" in e]
    return pd.DataFrame(rows).set_index(["task", "mode"]).round(2)
