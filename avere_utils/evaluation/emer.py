"""Notebook 06: EMER, open-ended emotion descriptions judged 1-10 on Clue, Label, Spurious, Hallucination.

The model describes each clip (resumable predictions, as everywhere); a judge chosen in params scores
each description against the reference (`Item.text["reason"]`).  Failed judgements (no answer, an
unparseable reply, a failed request) never enter a mean: each criterion is the mean over judged items,
reported beside `n_judged`, `n_judge_failed` and `coverage`; with no item judged it is null.
The judge is built before any prediction is made, so a missing API key fails before GPU time is spent.
"""
from __future__ import annotations

import json
import logging
import math
import time
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

from avere_utils import benchmarks
from avere_utils.evaluation import common, registry
from avere_utils.evaluation.judges import (
    CueJudge,
    HFJudge,
    Judge,
    JudgeResult,
    OpenAIJudge,
    judge_summary,
    write_batch_requests,
)
from avere_utils.evaluation.params import EmerParams
from avere_utils.evaluation.predict import MediaFn, PredictionRun, PredictionTask
from avere_utils.evaluation.stage import Scored, Scorer
from avere_utils.evaluation.text_quality import description_checks, quality_summary
from avere_utils.paths import atomic_write_text
from avere_utils.records import Item

if TYPE_CHECKING:  # pandas is imported where a table is built; torch comes with the backend
    import pandas as pd

    from avere_utils.models.backend import Backend

log = logging.getLogger(__name__)


def make_judge(params: EmerParams) -> Judge:
    if params.judge == "cue":
        return CueJudge()
    if params.judge == "openai":
        return OpenAIJudge(params.judge_base_url, params.judge_model, api_key_env=params.judge_api_key_env,
                           cache_dir=params.judge_cache_dir, timeout_s=params.judge_timeout_s,
                           max_retries=params.judge_max_retries, parse_retries=params.judge_parse_retries,
                           protocol=params.judge_protocol, prompt_file=params.judge_prompt_file or None)
    if params.judge == "hf":
        return HFJudge(params.hf_judge_path, device=params.device, max_new_tokens=params.judge_max_new_tokens,
                       parse_retries=params.judge_parse_retries)
    raise ValueError(f"unknown judge {params.judge!r}")


def check_items(items: Sequence[Item]) -> None:
    no_ref = [it.id for it in items if not (it.text or {}).get("reason")]
    if no_ref:
        raise ValueError(f"EMER items without a reference 'reason': {no_ref[:5]} ({len(no_ref)} in all)")


def judge_answers(params: EmerParams, judge: Judge, items: Sequence[Item], answers: dict[str, str | None]
                  ) -> tuple[list[JudgeResult], str]:
    """One judgement per item, and the Batch-API requests file (written either way, for those who prefer
    batch pricing)."""
    if params.judge_use_batch and isinstance(judge, OpenAIJudge):
        results: list[JudgeResult] = judge.judge_batch(items, answers, params.judge_batch_file,
                                                       poll_s=params.judge_batch_poll_s,
                                                       max_polls=params.judge_batch_max_polls)
        return results, params.judge_batch_file
    rows_in = [(it.id, it.text["reason"], answers[it.id]) for it in items if answers[it.id]]
    if isinstance(judge, OpenAIJudge):
        atomic_write_text(params.judge_batch_file,
                          "".join(json.dumps(r) + "\n" for r in judge.batch_requests(rows_in)))
        batch_file = params.judge_batch_file
    else:
        batch_file = write_batch_requests(params.judge_batch_file, rows_in, params.judge_model)
    results = [judge.judge(it, answers[it.id]) for it in tqdm(items, desc=f"judge ({judge.name})", unit="item")]
    return results, batch_file


def cue_rate_entries(results: Sequence[JudgeResult]) -> dict[str, Any]:
    """The cue judge's raw rates (percent), what the results notebook plots; {} for other judges."""
    rates = [r.rates for r in results if r.rates]
    if not rates:
        return {}
    cue_rates: dict[str, Any] = {k: 100 * float(np.nanmean([r[k] for r in rates])) if not all(
        math.isnan(r[k]) for r in rates) else None for k in ("clue_recall", "label_match", "spurious_rate",
                                                             "hallucination_rate")}
    cue_rates["mean_cues_cited"] = float(np.mean([r["n_cited"] for r in rates]))
    # per description, not per cited cue: a model that cites fewer cues can lower a rate while writing as
    # many wrong cues as before (a description citing nothing has none)
    for rate, key in (("hallucination_rate", "hallucinated_per_description"),
                      ("spurious_rate", "irrelevant_per_description")):
        cue_rates[key] = float(np.mean([r[rate] * r["n_cited"] if r["n_cited"] else 0.0 for r in rates]))
    return {
        "cue_rates": cue_rates,
        # An answer citing no cue has nothing spurious or hallucinated (10 on both) but recalls nothing
        # (clue 1): how many such answers there are says how to read those two scores.
        "n_no_cues_cited": sum(r["n_cited"] == 0 for r in rates),
        "hallucination_rate": cue_rates["hallucination_rate"],
        "spurious_rate": cue_rates["spurious_rate"],
    }


class EmerScorer(Scorer):
    """EMER: free descriptions, each judged against its reference by the judge of `params.judge`."""

    reports_scoring_time = False  # descriptions only: no candidate answers are ever scored

    def __init__(self, benchmark: str = "emer", judge: Judge | None = None):
        super().__init__(benchmark)
        self.judge = judge

    def prepare(self, params: EmerParams, items: list[Item]) -> list[Item]:
        check_items(items)
        self.judge = self.judge or make_judge(params)  # before predicting: a missing key or prompt file fails now
        return items

    def task(self, params: EmerParams) -> PredictionTask:
        return PredictionTask(prompt_for=lambda it: params.prompt, generate=True)

    def settings(self, params: EmerParams, task: PredictionTask, items: Sequence[Item]) -> dict[str, Any]:
        return {"prompt": params.prompt}

    def protocol(self, params: EmerParams) -> dict[str, Any]:
        return {"prompt": params.prompt}

    def headline_keys(self, params: EmerParams) -> tuple[str, ...]:
        return (*benchmarks.get(self.benchmark).headline, "coverage")

    def score(self, params: EmerParams, items: Sequence[Item], run: PredictionRun) -> Scored:
        judge = self.judge or make_judge(params)
        answers = {it.id: (run.records.get(it.id) or {}).get("generation") for it in items}
        t_judge = time.perf_counter()
        results, batch_file = judge_answers(params, judge, items, answers)
        judge_s = time.perf_counter() - t_judge
        summary = judge_summary(results)
        rows = [{"id": it.id, "answer": answers[it.id], "scores": r.scores, "rates": r.rates, "error": r.error,
                 "attempts": r.attempts} for it, r in zip(items, results)]
        judged_file = common.predictions_file(params, self.benchmark).with_suffix(".judged.jsonl")
        atomic_write_text(judged_file, "".join(json.dumps(row) + "\n" for row in rows))
        return Scored(f"judge:{judge.name}", {
            # means over judged items only (None = nothing judged); never a failure scored as a number
            **summary.means,
            "n_items": summary.n_items, "n_scored": summary.n_judged, "n_judged": summary.n_judged,
            "coverage": 100 * summary.n_judged / summary.n_items if summary.n_items else 0.0,
            "n_no_answer": summary.n_no_answer, "n_judge_failed": summary.n_failed, "judge_errors": summary.errors,
            "n_defined": summary.n_defined, "judge_protocol": params.judge_protocol,
            "judge": judge.describe(),
        }, timing={"judge_s": judge_s},
            tail={"judged_file": str(judged_file), "judge_batch_file": str(batch_file), **cue_rate_entries(results),
                  **description_quality(items, answers)})


def description_quality(items: Sequence[Item], answers: Mapping[str, str | None]) -> dict[str, Any]:
    """Whether the descriptions are well formed (evaluation/text_quality.py), on the items that have a
    cue record (the synthetic world); {} otherwise."""
    rows = [description_checks(answers[it.id] or "", it.text["cues"], it.label)
            for it in items if (it.text or {}).get("cues")]
    return {"description_quality": quality_summary(rows)} if rows else {}


def evaluate(params: EmerParams, backend: Backend, *, items: Sequence[Item] | None = None,
             media_fn: MediaFn | None = None, media_settings: Any = None, judge: Judge | None = None
             ) -> dict[str, Any]:
    """Notebook 06's name for `registry.evaluate` (a notebook's code is part of its stage's reuse key);
    `judge`: one built by the caller instead of the one `params.judge` names."""
    return registry.evaluate(params, "emer", backend, items=items, media_fn=media_fn, media_settings=media_settings,
                             scorer=EmerScorer(judge=judge) if judge else None)


def example_frame(metrics: dict[str, Any], n: int = 6) -> pd.DataFrame:
    """A few judged descriptions with their four scores (and the cue judge's rates when present)."""
    import pandas as pd

    rows = [json.loads(line) for line in open(metrics["judged_file"])][:n]
    return pd.DataFrame([{"id": r["id"], "answer": r["answer"], **(r["scores"] or {}), "error": r["error"]}
                         for r in rows])
