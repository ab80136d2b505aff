"""The one evaluation loop of notebooks 05-07; each benchmark plugs in a `Scorer` with what differs.

    run_stage(params, "dfew", backend, ClassificationScorer("dfew"))

The loop, in order:
  1. items   - the benchmark's manifest (or the caller's items), checked (and filtered) by the scorer;
  2. media   - a loader with the checkpoint's decoding settings, unless the caller brings one;
  3. predict - resumable predictions for the scorer's PredictionTask (other processes stop here);
  4. score   - the scorer reads the predictions in every mode (and judges, for EMER);
  5. write   - `metrics/<benchmark>-<variant>.json`, in one layout for every benchmark.
"""
from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from avere_utils import runlock
from avere_utils.evaluation import common
from avere_utils.evaluation.params import EvalParams
from avere_utils.evaluation.predict import MediaFn, PredictionRun, PredictionTask, run_predictions
from avere_utils.records import Item

if TYPE_CHECKING:  # the backend module imports torch: only for annotations here
    from avere_utils.models.backend import Backend


@dataclass
class Scored:
    """What a scorer adds to the metrics file, in file order: `scoring_mode`, then `body` (headline numbers,
    `modes`, `disagreement` ...), then its own `timing` entries, and `tail` after `predictions_file`."""

    scoring_mode: str
    body: dict[str, Any]
    timing: dict[str, float] = field(default_factory=dict)
    tail: dict[str, Any] = field(default_factory=dict)


class Scorer:
    """What one benchmark's evaluation does differently from the others.  One instance serves one run
    (`prepare` may keep what `score` needs later, e.g. EMER's judge)."""

    benchmark: str
    # The metrics' `timing` has a `scoring_s` entry (time spent scoring candidate answers) for benchmarks
    # that have a scoring mode, even when this run's modes leave it out.
    reports_scoring_time: bool = True

    def __init__(self, benchmark: str):
        self.benchmark = benchmark

    def prepare(self, params: EvalParams, items: list[Item]) -> list[Item]:
        """Check the items (a clear error names the bad ones) and return those to predict."""
        return items

    def task(self, params: EvalParams) -> PredictionTask:
        raise NotImplementedError

    def settings(self, params: EvalParams, task: PredictionTask, items: Sequence[Item]) -> dict[str, Any]:
        """Benchmark settings that decide the answers (added to the predictions' fingerprint)."""
        return {}

    def protocol(self, params: EvalParams) -> dict[str, Any]:
        """Benchmark entries of the metrics' `protocol` block."""
        return {}

    def score(self, params: EvalParams, items: Sequence[Item], run: PredictionRun) -> Scored:
        raise NotImplementedError

    def headline_keys(self, params: EvalParams) -> tuple[str, ...]:
        """The metrics a command line prints after the run."""
        return ("coverage",)

    def score_text(self, items: Sequence[Item], records: Mapping[str, dict[str, Any]],
                   modes: Sequence[str]) -> dict[str, Any]:
        """`avere-kit score`: the `modes` block (and what goes with it) of text answers made anywhere."""
        raise NotImplementedError(f"{self.benchmark}: text answers are not scored without the stage")


def run_stage(params: EvalParams, benchmark: str, backend: Backend, scorer: Scorer, *,
              items: Sequence[Item] | None = None, media_fn: MediaFn | None = None,
              media_settings: Any = None) -> dict[str, Any]:
    """Predict (resumably), score, write `metrics/<benchmark>-<variant>.json` and return it ({} on every
    process but the main one).  The main process holds the run folder's lock of this benchmark and variant
    throughout: a second writer is refused, naming this process (avere_utils.runlock)."""
    lock = (runlock.RunLock(params.run_dir, runlock.lock_name("eval", benchmark, params.variant),
                            what=f"the {benchmark} evaluation of {params.variant}")
            if common.is_main_process() else nullcontext())
    with lock:
        return _run_stage(params, benchmark, backend, scorer, items=items, media_fn=media_fn,
                          media_settings=media_settings)


def _run_stage(params: EvalParams, benchmark: str, backend: Backend, scorer: Scorer, *,
               items: Sequence[Item] | None, media_fn: MediaFn | None, media_settings: Any) -> dict[str, Any]:
    t_start = time.perf_counter()

    # 1. items
    items = scorer.prepare(params, list(items) if items is not None else common.load_items(params, benchmark))

    # 2. media
    if media_fn is None:
        media_fn, media_settings = common.make_media_fn(params, backend)

    # 3. predict
    task = scorer.task(params)
    # kept out of the fingerprint: packing changes float rounding only (as shared_prefix does in training);
    # a backend without packing ignores the attribute
    if hasattr(params, "pack_candidates"):
        backend.pack_candidates = params.pack_candidates
    settings = common.run_settings(params, media_settings, **scorer.settings(params, task, items))
    run = run_predictions(backend, items, common.predictions_file(params, benchmark), task,
                          common.decoding(params), settings=settings, media_fn=media_fn,
                          batch_size=params.batch_size, stale_policy=params.stale_predictions,
                          desc=f"{benchmark}-{params.variant}")
    if not common.is_main_process():  # the other processes only predicted their shard
        return {}

    # 4. score
    scored = scorer.score(params, items, run)

    # 5. write
    timing: dict[str, float] = {"computed_items": run.n_computed, "generate_s": run.generate_s}
    if scorer.reports_scoring_time:
        timing["scoring_s"] = run.scoring_s
    timing.update(media_s=run.media_s, **scored.timing, total_s=time.perf_counter() - t_start)
    metrics: dict[str, Any] = {
        "variant": params.variant, "scoring_mode": scored.scoring_mode,
        **scored.body,
        "model": common.model_info(params),
        "protocol": common.protocol(params, media_settings, **scorer.protocol(params)),
        "timing": timing,
        "predictions_file": run.files[0],
        "n_duplicate_records": run.n_duplicate_records,
        **scored.tail,
    }
    common.write_metrics(params, benchmark, metrics)
    return metrics
